"""The recurrent black-box learner: an LSTM reads the support set (no external memory, unlike MANN)."""
from __future__ import annotations

import torch
from torch import nn

from .base import BlackBoxLearner

__all__ = ["RecurrentLearner"]


class RecurrentLearner(BlackBoxLearner):
    """LSTM over the support sequence, then each query with a zero label; its only memory is its state.

    Santoro et al., "Meta-Learning with Memory-Augmented Neural Networks", ICML 2016.

    Args:
        n_way: Classes per task.
        hidden: LSTM hidden units.
        layers: LSTM layers.
        encoder, shuffle_train_support: See :class:`~mlcourse.blackbox.base.BlackBoxLearner`.
        slots: Input ``[e_y ⊗ f(x), f(x)]`` (``(N + 1) * D`` values) instead of ``[f(x), e_y]``.
    """

    def __init__(self, *, n_way: int = 5, hidden: int = 256, layers: int = 1, encoder: nn.Module | None = None,
                 shuffle_train_support: bool = True, slots: bool = True) -> None:
        super().__init__(n_way=n_way, encoder=encoder, shuffle_train_support=shuffle_train_support)
        self.slots = slots
        width = self.features * (n_way + 1) if slots else self.features + n_way
        self.lstm = nn.LSTM(width, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, n_way)

    def inputs(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LSTM inputs of pairs: features ``(B, L, D)``, one-hot labels ``(B, L, N)`` (zeros for queries)."""
        if self.slots:
            return torch.cat([(z[..., None, :] * y[..., :, None]).flatten(-2), z], dim=-1)
        return torch.cat([z, y], dim=-1)

    def logits(self, zs: torch.Tensor, ys: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        b, q = zq.shape[:2]
        _, (h, c) = self.lstm(self.inputs(zs, ys))  # the state after reading the support set
        # every query starts from that state, so queries do not see each other
        h = h.repeat_interleave(q, dim=1)
        c = c.repeat_interleave(q, dim=1)
        x = self.inputs(zq, zq.new_zeros(b, q, self.n_way)).reshape(b * q, 1, -1)
        out, _ = self.lstm(x, (h, c))
        return self.head(out[:, 0]).view(b, q, self.n_way)
