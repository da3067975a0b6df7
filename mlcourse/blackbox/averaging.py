"""The averaging black-box learner: embed each support pair, average (conditional-neural-process style)."""
from __future__ import annotations

import torch
from torch import nn

from .base import BlackBoxLearner, aggregate_mean

__all__ = ["AveragingLearner"]


class AveragingLearner(BlackBoxLearner):
    """Embed each support pair, average, and classify ``[f(x), mean]`` (conditional-neural-process style).

    Garnelo et al., "Conditional Neural Processes", ICML 2018. With ``slots=True`` a pair is
    embedded as ``e_y ⊗ g(f(x))``, so the mean holds ``K / S`` times the mean embedding of
    each class in that class's block.

    Args:
        n_way: Classes per task.
        hidden: Width of the pair embedding ``g`` and of the query classifier.
        encoder, shuffle_train_support: See :class:`~mlcourse.blackbox.base.BlackBoxLearner`.
        slots: Embed pairs as ``e_y ⊗ g(f(x))`` (context of ``N * hidden`` values) instead of
            ``g([f(x), e_y])`` (``hidden`` values).
    """

    def __init__(self, *, n_way: int = 5, hidden: int = 256, encoder: nn.Module | None = None,
                 shuffle_train_support: bool = True, slots: bool = True) -> None:
        super().__init__(n_way=n_way, encoder=encoder, shuffle_train_support=shuffle_train_support)
        d = self.features
        self.slots = slots
        self.pair = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        ctx = hidden * n_way if slots else hidden
        if not slots:
            self.pair[0] = nn.Linear(d + n_way, hidden)
        self.classifier = nn.Sequential(nn.Linear(d + ctx, hidden), nn.ReLU(), nn.Linear(hidden, n_way))

    def embed_pairs(self, zs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """Embed each support pair: ``(B, S, D)`` features and ``(B, S, N)`` one-hot labels -> ``(B, S, C)``."""
        if self.slots:
            return (self.pair(zs)[..., None, :] * ys[..., :, None]).flatten(-2)
        return self.pair(torch.cat([zs, ys], dim=-1))

    def context(self, zs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """The task context ``(B, C)``: the mean of the embedded pairs."""
        return aggregate_mean(self.embed_pairs(zs, ys))

    def logits(self, zs: torch.Tensor, ys: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        r = self.context(zs, ys)
        return self.classifier(torch.cat([zq, r[:, None].expand(-1, zq.shape[1], -1)], dim=-1))
