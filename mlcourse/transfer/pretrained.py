"""Few-shot classification by transfer: pretrain a classifier on every background class, then
classify each episode from the frozen features (no meta-learning).

Three methods from two papers share one learner, :class:`PretrainedClassifier`:

- **Baseline** (Chen, Liu, Kira, Wang and Huang, ICLR 2019, "A Closer Look at Few-shot
  Classification"): pretrain the backbone with a linear softmax classifier over all background
  classes; per episode, fit a new linear classifier on the frozen support features.
- **Baseline++** (same paper): the classifier is *cosine*, both when pretraining and per episode:
  logits :math:`s \\cos(f(x), w_k)`, so each class is a direction and the norms of the features
  stop mattering.
- **SimpleShot** (Wang, Chao, Weinberger and van der Maaten, 2019): the Baseline's pretraining;
  per episode, no fitting at all: centre the features with the mean feature of the background
  classes, L2-normalise them ("CL2N"), and classify by the nearest class mean.

The learner follows the protocol (:mod:`mlcourse.learner`): its ``meta_step`` reads the
training episodes as ordinary labelled mini-batches, every support and query image with its
*original* class id (``episode.classes``), so pretraining sees the same images, in the same
order, that meta-training sees; only the loss differs. Its ``scores`` are those of the episode's
rule, so the evaluator and the paired comparisons treat it as any other embedding learner.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..episodes import Episode
from ..learner import StepResult
from ..metric.base import FewShotClassifier, class_means
from ..metric.protonet import prototype_logits

__all__ = ["PretrainedClassifier", "CosineClassifier", "fit_episode_head", "RULES"]

RULES = ("linear", "cosine", "simpleshot")


class CosineClassifier(nn.Module):
    """Logits ``scale * cos(z, w_k)`` for every class ``k``: ``(B, D)`` -> ``(B, n_classes)`` (Baseline++)."""

    def __init__(self, in_features: int, n_classes: int, scale: float = 10.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_classes, in_features) * in_features ** -0.5)
        self.scale = float(scale)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(z, dim=1) @ F.normalize(self.weight, dim=1).T

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, n_classes={self.weight.shape[0]}, scale={self.scale}"


def fit_episode_head(support_z: torch.Tensor, support_y: torch.Tensor, n_way: int, *, cosine: bool = False,
                     scale: float = 2.0, steps: int = 100, weight_decay: float = 1e-3, seed: int = 0) -> nn.Module:
    """A new classifier fitted on frozen support features: linear (Baseline) or cosine (Baseline++).

    The head is drawn at random (from ``seed``, so an episode's prediction never depends on
    what ran before, and the global random stream is not touched) and fitted to the support
    cross-entropy with full-batch L-BFGS for ``steps`` iterations. Chen et al.'s code runs 100
    epochs of SGD at rate 0.01 instead; that recipe stops far from the optimum when the features
    are small (their norm depends on the backbone), and a few-shot result should not depend on
    how far a fit was run. The linear head adds ``weight_decay / 2`` times its squared weights,
    which makes its problem strictly convex (one optimum, however it starts). The cosine head's
    loss does not see the norm of its weights, so a decay would only shrink them towards zero
    without a minimum: it gets none; its problem is not convex, and its optimum is the one
    L-BFGS reaches from the seeded start.

    Returns:
        The fitted head (``(Q, D)`` -> ``(Q, n_way)`` logits), in eval mode.
    """
    z = support_z.detach().flatten(1)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    w = torch.randn(n_way, z.shape[1], generator=generator) * z.shape[1] ** -0.5
    with torch.random.fork_rng(devices=[]):  # building a layer draws its default init: keep it off the stream
        if cosine:
            head: nn.Module = CosineClassifier(z.shape[1], n_way, scale=scale)
        else:
            head = nn.Linear(z.shape[1], n_way)
            head.bias.data.zero_()
    head.weight.data.copy_(w)
    head = head.to(device=z.device, dtype=z.dtype)
    decay = 0.0 if cosine else weight_decay
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=steps, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(head(z), support_y) + decay / 2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():  # the evaluator runs under no_grad; the head is fitted all the same
        opt.step(closure)
    return head.eval()


class PretrainedClassifier(FewShotClassifier):
    """Pretrain on every background class, classify an episode from frozen features by ``rule``.

    Args:
        backbone: The embedding, e.g. :class:`~mlcourse.backbones.Conv4` (flat features ``(B, D)``).
        n_classes: Classes of the pretraining data (the background set); every training
            episode's ``classes`` must lie in ``0..n_classes-1``.
        rule: How an episode is classified: ``"linear"`` (Baseline), ``"cosine"`` (Baseline++)
            or ``"simpleshot"`` (nearest centred, L2-normalised class mean).
        scale: The cosine classifier's scale when pretraining (Baseline++ only).
        head_scale, head_steps: The per-episode head's cosine scale and L-BFGS iterations
            (:func:`fit_episode_head`; Chen et al.'s code scales by 2 below 200 classes, 10 above).
        mean_momentum: SimpleShot's centre, the mean feature of the background classes, is a
            running average over the training batches while training (for the validations: it
            starts at the first batch's mean, so it is never biased towards zero); when training
            ends, :meth:`end_training` replaces it with the mean over every background image
            under the final weights in eval mode, as Wang et al. compute it. The weights and
            the mean are saved together.

    With ``rule="cosine"`` the pretraining classifier is cosine too, as in Baseline++; with the
    other two rules it is linear.
    """

    def __init__(self, backbone: nn.Module, n_classes: int, *, rule: str = "linear", scale: float = 10.0,
                 head_scale: float = 2.0, head_steps: int = 100, mean_momentum: float = 0.01) -> None:
        super().__init__(backbone)
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"n_classes must be an int of at least 2 (the background classes), got {n_classes!r}")
        dim = getattr(backbone, "out_features", None)
        if not isinstance(dim, int):
            raise ValueError("the backbone must say its feature size as `out_features` (Conv4 does)")
        self.rule, self.n_classes = rule, n_classes
        self.head_scale, self.head_steps = float(head_scale), int(head_steps)
        self.mean_momentum = float(mean_momentum)
        self.classifier = CosineClassifier(dim, n_classes, scale) if rule == "cosine" else nn.Linear(dim, n_classes)
        self.register_buffer("feature_mean", torch.zeros(dim))  # all zeros: no batch seen yet

    def extra_repr(self) -> str:
        return f"rule={self.rule!r}, n_classes={self.n_classes}, head_steps={self.head_steps}"

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Flat features ``(B, D)``."""
        return self.backbone(x).flatten(1)

    def meta_step(self, tasks: Sequence[Episode], optimizer: torch.optim.Optimizer) -> StepResult:
        """One step of ordinary classification over every image of ``tasks``, labelled by original class id.

        The outputs are the logits of each task's queries for that task's classes, ``(Q, n_way)``,
        so the training loop's accuracy is the accuracy within the episode.
        """
        if not tasks:
            raise ValueError("meta_step needs at least one task")
        for t in tasks:
            if int(t.classes.min()) < 0 or int(t.classes.max()) >= self.n_classes:
                raise ValueError(f"an episode holds class ids {t.classes.tolist()}, outside the "
                                 f"{self.n_classes} classes this classifier was built for; build it with "
                                 "n_classes = the number of classes of the training data")
        x = torch.cat([torch.cat([t.support_x, t.query_x]) for t in tasks])
        y = torch.cat([t.classes[torch.cat([t.support_y, t.query_y])] for t in tasks])
        optimizer.zero_grad(set_to_none=True)
        z = self.embed(x)
        logits = self.classifier(z)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            rate = 1.0 if not bool(self.feature_mean.any()) else self.mean_momentum  # the first batch sets it
            self.feature_mean.lerp_(z.detach().mean(0), rate)
        outputs, start = [], 0
        for t in tasks:
            n_s, n_q = len(t.support_y), len(t.query_y)
            outputs.append(logits[start + n_s:start + n_s + n_q][:, t.classes].detach())
            start += n_s + n_q
        return StepResult(loss.item(), outputs)

    @torch.no_grad()
    def end_training(self, source) -> None:
        """Called by :func:`~mlcourse.training.meta_train` on the best weights: SimpleShot's centre
        becomes the mean feature of every image of the training data ``source``, in eval mode."""
        from ..evaluation import embed_dataset

        if self.rule != "simpleshot":
            return  # only SimpleShot reads the centre
        device = self.feature_mean.device
        self.feature_mean.copy_(embed_dataset(self, source, device=device).mean(0))

    def scores(self, support_z, support_y, query_z, n_way):
        """Scores of the episode's rule, ``(Q, n_way)``; the backbone is never updated here."""
        s, q = support_z.flatten(1), query_z.flatten(1)
        if self.rule == "simpleshot":
            s, q = (F.normalize(v - self.feature_mean, dim=1) for v in (s, q))
            return prototype_logits(q, class_means(s, support_y, n_way))
        class_means(s, support_y, n_way)  # the same clear error as every learner for a class without support
        head = fit_episode_head(s, support_y, n_way, cosine=self.rule == "cosine", scale=self.head_scale,
                                steps=self.head_steps)
        return head(q)
