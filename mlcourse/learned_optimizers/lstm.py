"""The coordinatewise LSTM optimiser of Andrychowicz et al. (2016) and its gradient preprocessing."""
from __future__ import annotations

import math
import os

import torch
from torch import nn

__all__ = ["preprocess_gradients", "LSTMOptimizer"]


def preprocess_gradients(grad: torch.Tensor, p: float = 10.0) -> torch.Tensor:
    """The paper's gradient preprocessing: ``(n,)`` gradients -> ``(n, 2)`` inputs.

    ``(log|g| / p, sign g)`` where ``|g| >= exp(-p)``, else ``(-1, exp(p) * g)``. Both
    coordinates stay in a small range whatever the scale of ``g``.
    """
    if p <= 0:
        raise ValueError(f"p must be positive, got {p}")
    g = grad.reshape(-1)
    big = g.abs() >= math.exp(-p)
    first = torch.where(big, g.abs().clamp_min(math.exp(-p)).log() / p, torch.full_like(g, -1.0))
    second = torch.where(big, torch.sign(g), math.exp(p) * g)
    return torch.stack([first, second], dim=1)


class LSTMOptimizer(nn.Module):
    """Coordinatewise two-layer LSTM optimiser.

    Args:
        hidden: Hidden units per LSTM layer (20 in the paper).
        layers: LSTM layers (2 in the paper).
        preprocess: Use :func:`preprocess_gradients` (``True``) or feed the raw gradient.
        p: The preprocessing constant.
        output_scale: The LSTM output is multiplied by this (0.1 in the paper).
    """

    def __init__(self, hidden: int = 20, layers: int = 2, preprocess: bool = True, p: float = 10.0,
                 output_scale: float = 0.1) -> None:
        super().__init__()
        self.config = dict(hidden=hidden, layers=layers, preprocess=preprocess, p=p, output_scale=output_scale)
        self.hidden, self.layers, self.preprocess, self.p, self.output_scale = hidden, layers, preprocess, p, output_scale
        # LSTM cells rather than nn.LSTM: one time step at a time, about 2x faster on CPU here
        self.cells = nn.ModuleList(nn.LSTMCell(2 if preprocess else 1, hidden)
                                   if i == 0 else nn.LSTMCell(hidden, hidden) for i in range(layers))
        self.head = nn.Linear(hidden, 1)

    def initial_state(self, n: int, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero LSTM state for ``n`` coordinates: ``(h, c)``, each ``(layers, n, hidden)``."""
        z = torch.zeros(self.layers, n, self.hidden, device=device)
        return z, z.clone()

    def forward(self, grad: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Updates (shape of ``grad``) for every coordinate, and the new state."""
        if state[0].shape[1] != grad.numel():
            raise ValueError(f"the state is for {state[0].shape[1]} coordinates but the gradient has {grad.numel()}; "
                             "start with initial_state(grad.numel())")
        x = preprocess_gradients(grad, self.p) if self.preprocess else grad.reshape(-1, 1)
        hs, cs = [], []
        for i, cell in enumerate(self.cells):
            x, c = cell(x, (state[0][i], state[1][i]))
            hs.append(x)
            cs.append(c)
        return self.output_scale * self.head(x).view_as(grad), (torch.stack(hs), torch.stack(cs))

    def save(self, path: str | os.PathLike) -> None:
        """Save the weights and the configuration."""
        torch.save({"config": self.config, "state_dict": self.state_dict()}, path)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: torch.device | str | None = "cpu") -> "LSTMOptimizer":
        """Load an optimiser saved with :meth:`save`."""
        blob = torch.load(path, map_location=map_location, weights_only=True)
        if not isinstance(blob, dict) or "config" not in blob:
            raise ValueError(f"{path} is not a file written by LSTMOptimizer.save")
        net = cls(**blob["config"])
        net.load_state_dict(blob["state_dict"])
        return net
