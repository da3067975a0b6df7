"""Black-box adaptation: a network that reads the support set and labels the queries.

Optimization-based learners (:mod:`mlcourse.optimization`) adapt by gradient steps; metric
learners (:mod:`mlcourse.metric`) by comparing embeddings. A *black-box* learner adapts by a forward
pass: a network reads the labelled support set ``{(x_i, y_i)}`` and produces a task context
that conditions a classifier of the queries, ``p(y | x, S) = h(x, g(S))``. Everything is one
network, trained end to end on episodes (CS330, lecture 3).

Three ways to read the support set:

* :class:`~mlcourse.blackbox.recurrent.RecurrentLearner`, as in memory-augmented neural networks (Santoro et al., 2016):
  an LSTM reads the support pairs one after the other; each query is then fed with a zero
  label from the state the support left behind, and the LSTM output is classified. The
  answer can depend on the *order* of the support set.
* :class:`~mlcourse.blackbox.averaging.AveragingLearner`, as in conditional neural processes (Garnelo et al., 2018):
  each pair is embedded, the embeddings are averaged into a context ``r``, and the query
  classifier reads ``[f(x), r]``. A mean does not depend on the order: the learner is
  permutation invariant by construction (up to floating-point rounding in the sum).
* :class:`~mlcourse.blackbox.attention.AttentionLearner`, a small transformer in context:
  support pairs and queries are tokens, and each query attends to the support tokens (an
  addressable memory, read by content) and to itself. No positional encoding: order invariant.

How a pair ``(x, y)`` enters matters a lot for how fast these learners train. Concatenating
the features with the one-hot label, ``[f(x), e_y]``, leaves the network to discover
multiplicative label binding on its own; on FontGlot neither learner left chance level in 300
meta-steps of 8 tasks that way. With ``slots=True`` (the default) a pair is written into the
slot of its label, ``e_y ⊗ f(x)`` (an ``N * D`` vector that is ``f(x)`` in block ``y`` and zero
elsewhere), so a sum or an LSTM can keep per-class information apart by plain addition. The
recurrent learner also gets the unlabelled ``f(x)``, which is all a query has. Both learners
then see the same information and differ only in how they aggregate it.

Both use a :class:`~mlcourse.backbones.Conv4` image encoder ``f`` and output ``n_way``
logits, so a model serves one number of ways (it can take any number of shots). They are
:class:`~mlcourse.learner.Learner` s like every method of the course:
:func:`~mlcourse.training.meta_train` trains them and :func:`~mlcourse.evaluation.evaluate`
evaluates them.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import Conv4
from ..device import get_device
from ..episodes import Episode, check_episode_request, draw_episode, labels_of
from ..evaluation import eval_mode
from ..learner import StepResult

__all__ = ["BlackBoxLearner", "aggregate_mean", "shuffle_support", "order_sensitivity"]


def aggregate_mean(pair_embeddings: torch.Tensor) -> torch.Tensor:
    """Order-invariant summary of a support set: the mean over its pairs.

    Args:
        pair_embeddings: ``(B, S, D)``, the embeddings of the ``S`` support pairs of ``B`` tasks.

    Returns:
        ``(B, D)``, one context vector per task.
    """
    if pair_embeddings.dim() != 3:
        raise ValueError(f"pair_embeddings must have shape (tasks, support size, features), "
                         f"got {tuple(pair_embeddings.shape)}")
    if pair_embeddings.shape[1] == 0:
        raise ValueError("the support set is empty: there is nothing to average")
    return pair_embeddings.mean(dim=1)


def shuffle_support(task: Episode, generator: torch.Generator | None = None) -> Episode:
    """The same task with its support examples in a random order (queries unchanged)."""
    perm = torch.randperm(task.support_y.numel(), generator=generator).to(task.support_y.device)
    return Episode(task.support_x[perm], task.support_y[perm], task.query_x, task.query_y, task.classes)


class BlackBoxLearner(nn.Module):
    """Shared part: the image encoder, batching of tasks, the loss and the training interface.

    Args:
        n_way: Number of classes per task (the output size).
        encoder: Image encoder ``(B, C, H, W) -> (B, D)`` with ``out_features``; Conv4 by default.
        shuffle_train_support: Present the support set in a random order during training, so
            that an order-sensitive learner cannot rely on the class-sorted order of episodes.
    """

    def __init__(self, *, n_way: int = 5, encoder: nn.Module | None = None, shuffle_train_support: bool = True) -> None:
        super().__init__()
        if isinstance(n_way, bool) or not isinstance(n_way, int) or n_way < 2:
            raise ValueError(f"n_way must be an int of at least 2, got {n_way!r}")
        self.n_way = n_way
        self.encoder = encoder if encoder is not None else Conv4()
        self.features = int(self.encoder.out_features)
        self.shuffle_train_support = shuffle_train_support

    def _check(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> None:
        if support_x.dim() != 5 or query_x.dim() != 5:
            raise ValueError("expected batched images: support_x (tasks, support size, C, H, W) and "
                             f"query_x (tasks, queries, C, H, W), got {tuple(support_x.shape)} and "
                             f"{tuple(query_x.shape)}; use forward_task for a single Episode")
        if support_y.shape != support_x.shape[:2]:
            raise ValueError(f"support_y must have shape {tuple(support_x.shape[:2])}, got {tuple(support_y.shape)}")
        if support_y.numel() and (support_y.min() < 0 or support_y.max() >= self.n_way):
            raise ValueError(f"support labels must lie in 0..{self.n_way - 1} (this learner was built for "
                             f"n_way={self.n_way}), got labels {sorted(set(support_y.flatten().tolist()))}")

    def _encode(self, support_x: torch.Tensor, query_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, s, q = support_x.shape[0], support_x.shape[1], query_x.shape[1]
        z = self.encoder(torch.cat([support_x.flatten(0, 1), query_x.flatten(0, 1)]))
        return z[: b * s].view(b, s, -1), z[b * s:].view(b, q, -1)

    def forward(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
        """Query logits ``(B, Q, n_way)`` from supports ``(B, S, C, H, W)``, labels ``(B, S)``, queries ``(B, Q, C, H, W)``."""
        self._check(support_x, support_y, query_x)
        zs, zq = self._encode(support_x, query_x)
        return self.logits(zs, F.one_hot(support_y, self.n_way).to(zs.dtype), zq)

    def logits(self, zs: torch.Tensor, ys: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        """Query logits from encoded supports ``(B, S, D)``, one-hot labels ``(B, S, N)``, queries ``(B, Q, D)``."""
        raise NotImplementedError

    def forward_task(self, task: Episode) -> torch.Tensor:
        """Query logits ``(Q, n_way)`` of one episode."""
        if task.n_way != self.n_way:
            raise ValueError(f"this learner outputs {self.n_way} classes, the episode is {task.n_way}-way; "
                             f"build it with n_way={task.n_way}")
        return self(task.support_x[None], task.support_y[None], task.query_x[None])[0]

    def _stack(self, tasks: Sequence[Episode]) -> tuple[torch.Tensor, ...]:
        shapes = {(t.n_way, t.support_y.numel(), t.query_y.numel()) for t in tasks}
        if len(shapes) != 1:
            raise ValueError(f"all tasks of a meta-batch need the same shape (n_way, support size, queries), got {shapes}")
        if self.training and self.shuffle_train_support:
            tasks = [shuffle_support(t) for t in tasks]
        return tuple(torch.stack([getattr(t, k) for t in tasks])
                     for k in ("support_x", "support_y", "query_x", "query_y"))

    def meta_loss(self, tasks: Sequence[Episode]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean query cross-entropy over the tasks, and the query logits ``(B, Q, n_way)``."""
        sx, sy, qx, qy = self._stack(tasks)
        out = self(sx, sy, qx)
        return F.cross_entropy(out.flatten(0, 1), qy.flatten()), out

    def extra_repr(self) -> str:
        return f"n_way={self.n_way}, shuffle_train_support={self.shuffle_train_support}"

    def meta_step(self, tasks: Sequence[Episode], optimizer: torch.optim.Optimizer) -> StepResult:
        """One training step on a batch of tasks; returns the loss and each task's query logits."""
        optimizer.zero_grad(set_to_none=True)
        loss, out = self.meta_loss(tasks)
        loss.backward()
        optimizer.step()
        return StepResult(loss.item(), list(out.detach()))

    @torch.no_grad()
    def predict(self, episode: Episode) -> torch.Tensor:
        """Predicted query labels of one episode (in eval mode: the support order is kept)."""
        with eval_mode(self):
            return self.forward_task(episode).argmax(-1)


@torch.no_grad()
def order_sensitivity(learner: BlackBoxLearner, dataset, *, n_way: int = 5, k_shot: int = 5, n_query: int = 15,
                      n_episodes: int = 100, n_orders: int = 5, seed: int = 0,
                      device: torch.device | str | None = None) -> dict[str, float]:
    """How much a learner's answers depend on the order of the support set.

    For each of ``n_episodes`` fixed episodes, the support set is presented in its sorted
    order and in ``n_orders`` random orders.

    Returns:
        ``changed``: the fraction of query predictions that differ from the sorted order's;
        ``tv``: the mean total-variation distance between the predicted distributions
        (0 = identical, 1 = disjoint); ``accuracy_range``: the mean over episodes of the
        spread (max - min) of query accuracy across the orders. All 0 for an
        order-invariant learner.
    """
    device = get_device(device)
    labels = labels_of(dataset)
    check_episode_request(labels, n_way, k_shot, n_query)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    changed, tv, spread = [], [], []
    for _ in range(n_episodes):
        task = draw_episode(dataset, n_way=n_way, k_shot=k_shot, n_query=n_query, rng=rng, labels=labels).to(device)
        with eval_mode(learner):
            p0 = learner.forward_task(task).softmax(-1)
            shuffled = [learner.forward_task(shuffle_support(task, gen)).softmax(-1) for _ in range(n_orders)]
        accs = [(p0.argmax(-1) == task.query_y).float().mean().item()]
        for p in shuffled:
            changed.append((p.argmax(-1) != p0.argmax(-1)).float().mean().item())
            tv.append(0.5 * (p - p0).abs().sum(-1).mean().item())
            accs.append((p.argmax(-1) == task.query_y).float().mean().item())
        spread.append(max(accs) - min(accs))
    return {"changed": float(np.mean(changed)), "tv": float(np.mean(tv)), "accuracy_range": float(np.mean(spread))}
