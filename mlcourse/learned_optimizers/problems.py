"""Optimizees: batches of independent problems sharing one flat parameter tensor.

Each has ``theta0`` (the starting point, ``(B * dim,)``) and ``losses(theta, step) -> (B,)``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["QuadraticProblems", "DigitsMLP"]


class QuadraticProblems:
    """``B`` random quadratics ``f_b(theta) = ||W_b theta - y_b||^2`` in ``dim`` dimensions.

    ``W`` and ``y`` have standard normal entries, as does the starting point ``theta0``
    (shape ``(B * dim,)``, the problems side by side).
    """

    def __init__(self, n_problems: int = 128, dim: int = 10, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> None:
        self.n_problems, self.dim = n_problems, dim
        self.W = torch.randn(n_problems, dim, dim, generator=generator).to(device)
        self.y = torch.randn(n_problems, dim, generator=generator).to(device)
        self.theta0 = torch.randn(n_problems * dim, generator=generator).to(device)

    def losses(self, theta: torch.Tensor, step: int = 0) -> torch.Tensor:
        """The ``(B,)`` losses at ``theta`` (``step`` is unused: the problem is deterministic)."""
        t = theta.view(self.n_problems, self.dim)
        return (torch.einsum("bij,bj->bi", self.W, t) - self.y).pow(2).sum(dim=1)

    def minimum(self) -> torch.Tensor:
        """The ``(B,)`` optimal losses (least squares), to plot the gap to optimum."""
        sol = torch.linalg.lstsq(self.W, self.y[..., None]).solution[..., 0]
        return self.losses(sol.reshape(-1))


def _digits(device):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    x = torch.as_tensor(x[order] / 16.0, dtype=torch.float32, device=device)
    y = torch.as_tensor(y[order], device=device)
    n_train = 1300
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


class DigitsMLP:
    """``B`` one-hidden-layer networks on scikit-learn's 8x8 handwritten digits, side by side.

    Each network maps 64 pixels to ``hidden`` units (``activation``: ``"sigmoid"`` as in the
    paper, or ``"relu"``) to 10 logits; the loss is the cross-entropy of a mini-batch of
    ``batch_size`` training digits, drawn anew at each step (the same batch for all ``B``
    networks; step ``t`` of a problem set always gets the same batch). 1,300 digits train,
    497 are held out (:meth:`test_accuracy`).
    """

    def __init__(self, n_problems: int = 16, hidden: int = 20, activation: str = "sigmoid", batch_size: int = 128,
                 generator: torch.Generator | None = None, device: torch.device | str | None = None) -> None:
        if activation not in ("sigmoid", "relu"):
            raise ValueError(f"activation must be 'sigmoid' or 'relu', got {activation!r}")
        self.n_problems, self.hidden, self.activation, self.batch_size = n_problems, hidden, activation, batch_size
        (self.x, self.y), (self.x_test, self.y_test) = _digits(device)
        self.shapes = [(64, hidden), (hidden,), (hidden, 10), (10,)]
        self.n_params = sum(math.prod(s) for s in self.shapes)
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        self.batch_seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        parts = []
        for shape, fan_in in zip(self.shapes, (64, 64, hidden, hidden)):  # PyTorch's default Linear init
            bound = 1 / math.sqrt(fan_in)
            parts.append((torch.rand(n_problems, math.prod(shape), generator=gen) * 2 - 1) * bound)
        self.theta0 = torch.cat(parts, dim=1).reshape(-1).to(device)

    def _unpack(self, theta: torch.Tensor) -> list[torch.Tensor]:
        flat = theta.view(self.n_problems, self.n_params)
        out, i = [], 0
        for shape in self.shapes:
            n = math.prod(shape)
            out.append(flat[:, i:i + n].reshape(self.n_problems, *shape))
            i += n
        return out

    def logits(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``(B, n, 10)`` logits of every network on inputs ``x`` ``(n, 64)``."""
        w1, b1, w2, b2 = self._unpack(theta)
        h = torch.einsum("ni,bih->bnh", x, w1) + b1[:, None]
        h = torch.sigmoid(h) if self.activation == "sigmoid" else torch.relu(h)
        return torch.einsum("bnh,bho->bno", h, w2) + b2[:, None]

    def losses(self, theta: torch.Tensor, step: int = 0) -> torch.Tensor:
        """The ``(B,)`` mini-batch cross-entropies at ``theta`` for step ``step``."""
        gen = torch.Generator().manual_seed(self.batch_seed + step)
        idx = torch.randint(0, len(self.y), (self.batch_size,), generator=gen).to(self.y.device)
        out = self.logits(theta, self.x[idx])
        return F.cross_entropy(out.flatten(0, 1), self.y[idx].repeat(self.n_problems), reduction="none"
                               ).view(self.n_problems, -1).mean(dim=1)

    @torch.no_grad()
    def test_accuracy(self, theta: torch.Tensor) -> torch.Tensor:
        """``(B,)`` accuracy of each network on the 497 held-out digits."""
        return (self.logits(theta, self.x_test).argmax(-1) == self.y_test).float().mean(dim=1)
