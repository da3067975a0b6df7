"""The shared part of the optimization-based learners: adapt by gradient steps on the support set.

:class:`GradientLearner` holds the network whose parameters are the meta-learned
initialisation, the inner loop (:func:`~mlcourse.optimization.inner.adapt`) and test-time
prediction. Its subclasses differ only in how the outer gradient is formed
(:meth:`GradientLearner.meta_backward`): MAML differentiates the query loss through the inner
loop (:class:`~mlcourse.optimization.maml.MAML`), Reptile moves towards the adapted weights
(:class:`~mlcourse.optimization.reptile.Reptile`).

BatchNorm: like the reference MAML code, models are run with the statistics of the current
batch, in adaptation and at test time (use ``Conv4(track_running_stats=False)``). Running
averages would mix tasks and make a prediction depend on the tasks seen before.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..episodes import Episode
from ..learner import StepResult
from .inner import LearningRate, Params, adapt, functional_forward, parameters_of

__all__ = ["GradientLearner"]


class GradientLearner(nn.Module):
    """A learner that adapts ``model`` to each task with ``inner_steps`` gradient steps of size ``inner_lr``.

    Args:
        model: The network adapted per task, e.g. ``nn.Sequential(Conv4(track_running_stats=False),
            nn.Linear(64, n_way))`` for classification or an :class:`~mlcourse.backbones.MLP`
            for regression.
        inner_lr: Inner-loop step size :math:`\\alpha`.
        inner_steps: Inner gradient steps during meta-training (and, by default, at test time).
        loss_fn: ``loss_fn(output, target)``; cross-entropy by default, ``F.mse_loss`` for regression.
    """

    def __init__(self, model: nn.Module, *, inner_lr: float, inner_steps: int,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy) -> None:
        super().__init__()
        if isinstance(inner_steps, bool) or not isinstance(inner_steps, int) or inner_steps < 1:
            raise ValueError(f"inner_steps must be an int of at least 1, got {inner_steps!r}")
        self.model, self.inner_lr, self.inner_steps, self.loss_fn = model, inner_lr, inner_steps, loss_fn

    def extra_repr(self) -> str:
        return f"inner_lr={self.inner_lr}, inner_steps={self.inner_steps}, loss_fn={self.loss_fn.__name__}"

    # -- the inner loop ---------------------------------------------------------------------------
    def inner_lrs(self) -> LearningRate:
        """The inner step sizes: one float here, one tensor per parameter in Meta-SGD."""
        return self.inner_lr

    def adapt(self, x: torch.Tensor, y: torch.Tensor, *, inner_steps: int | None = None,
              first_order: bool = False, track_meta_grad: bool = True) -> Params:
        """Parameters adapted to the support set ``(x, y)`` (``inner_steps`` default: the learner's)."""
        return adapt(self.model, parameters_of(self.model), x, y, inner_lr=self.inner_lrs(),
                     inner_steps=self.inner_steps if inner_steps is None else inner_steps, loss_fn=self.loss_fn,
                     first_order=first_order, track_meta_grad=track_meta_grad)

    def forward(self, x: torch.Tensor, params: Params | None = None) -> torch.Tensor:
        """The model's output on ``x`` with ``params`` (its own parameters when ``None``)."""
        return self.model(x) if params is None else functional_forward(self.model, params, x)

    # -- the outer loop ---------------------------------------------------------------------------
    def meta_backward(self, tasks: Sequence[Episode]) -> StepResult:
        """Accumulate the outer gradient of ``tasks`` into ``.grad``; return the mean query loss and outputs."""
        raise NotImplementedError

    def meta_step(self, tasks: Sequence[Episode], optimizer: torch.optim.Optimizer) -> StepResult:
        """One outer update: zero the gradients, :meth:`meta_backward`, ``optimizer.step()``."""
        if not tasks:
            raise ValueError("meta_step needs at least one task")
        optimizer.zero_grad(set_to_none=True)
        result = self.meta_backward(tasks)
        optimizer.step()
        return result

    def meta_gradient(self, tasks: Sequence[Episode]) -> dict[str, torch.Tensor]:
        """The outer gradient by parameter name, leaving ``.grad`` as it was; for checks and exercises."""
        saved = {n: p.grad for n, p in self.named_parameters()}
        for p in self.parameters():
            p.grad = None
        try:
            self.meta_backward(tasks)
            return {n: torch.zeros_like(p) if p.grad is None else p.grad.clone()
                    for n, p in self.named_parameters() if p.requires_grad}
        finally:
            for n, p in self.named_parameters():
                p.grad = saved[n]

    # -- test time --------------------------------------------------------------------------------
    def adapted_output(self, episode: Episode, *, inner_steps: int | None = None,
                       queries: str = "together") -> torch.Tensor:
        """Query outputs after adapting to the support set (no meta-gradient kept).

        ``queries`` says how a model with batch-statistics BatchNorm sees the queries:
        ``"together"`` (the reference MAML code: all queries in one batch, normalised with their
        own statistics, so a query's answer depends on the other queries: *transductive*) or
        ``"with_support"`` (each query alone in a batch with the support images: its answer
        depends on the support set and itself only: *inductive*).
        """
        if queries not in ("together", "with_support"):
            raise ValueError(f"queries must be 'together' or 'with_support', got {queries!r}")
        params = self.adapt(episode.support_x, episode.support_y, inner_steps=inner_steps, track_meta_grad=False)
        with torch.no_grad():
            if queries == "together":
                return self(episode.query_x, params)
            n = len(episode.support_x)
            return torch.cat([self(torch.cat([episode.support_x, x[None]]), params)[n:] for x in episode.query_x])

    def predict(self, episode: Episode, *, inner_steps: int | None = None, queries: str = "together") -> torch.Tensor:
        """Predicted query labels after ``inner_steps`` steps on the support set (default: the learner's);
        ``queries`` as in :meth:`adapted_output`."""
        return self.adapted_output(episode, inner_steps=inner_steps, queries=queries).argmax(dim=-1)
