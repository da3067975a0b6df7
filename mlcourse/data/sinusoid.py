"""Sinusoid regression tasks, the toy problem of the MAML paper (Finn et al. 2017, section 5.1).

Each task is :math:`y = A \\sin(x - \\varphi)` with amplitude :math:`A \\sim U[0.1, 5]` and phase
:math:`\\varphi \\sim U[0, \\pi]`; inputs are drawn from :math:`U[-5, 5]`. A learner sees ``k_shot``
points of a new task and must predict the whole curve.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["SinusoidTask", "Sinusoids"]


@dataclass
class SinusoidTask:
    """One regression task: support/query points ``(K, 1)`` and the true curve's parameters."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    amplitude: float
    phase: float

    def true_function(self, x: torch.Tensor) -> torch.Tensor:
        """The task's curve at ``x``."""
        return self.amplitude * torch.sin(x - self.phase)

    def to(self, device: torch.device | str) -> "SinusoidTask":
        return SinusoidTask(self.support_x.to(device), self.support_y.to(device), self.query_x.to(device),
                            self.query_y.to(device), self.amplitude, self.phase)


class Sinusoids:
    """The distribution of sinusoid tasks.

    Args:
        k_shot: Support points per task (K = 5, 10 in the paper).
        n_query: Query points per task.
        amplitude, phase, x_range: Ranges of the uniform distributions.
    """

    def __init__(self, k_shot: int = 10, n_query: int = 10, amplitude: tuple[float, float] = (0.1, 5.0),
                 phase: tuple[float, float] = (0.0, float(np.pi)), x_range: tuple[float, float] = (-5.0, 5.0)) -> None:
        if k_shot < 1 or n_query < 1:
            raise ValueError(f"k_shot and n_query must be at least 1, got k_shot={k_shot}, n_query={n_query}")
        self.k_shot, self.n_query = k_shot, n_query
        self.amplitude, self.phase, self.x_range = amplitude, phase, x_range

    def sample_tasks(self, n_tasks: int, rng: np.random.Generator) -> list[SinusoidTask]:
        """``n_tasks`` tasks drawn with ``rng`` (float32 tensors on the CPU)."""
        tasks = []
        for _ in range(n_tasks):
            a = float(rng.uniform(*self.amplitude))
            p = float(rng.uniform(*self.phase))
            x = torch.from_numpy(rng.uniform(*self.x_range, size=(self.k_shot + self.n_query, 1))).float()
            y = a * torch.sin(x - p)
            tasks.append(SinusoidTask(x[: self.k_shot], y[: self.k_shot], x[self.k_shot:], y[self.k_shot:], a, p))
        return tasks
