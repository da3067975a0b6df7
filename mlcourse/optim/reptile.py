"""Reptile (Nichol, Achiam and Schulman, 2018): move the initialisation towards adapted weights.

For each task, run plain SGD from :math:`\\theta` for a few steps to get :math:`\\phi_i`, then move
:math:`\\theta \\leftarrow \\theta + \\epsilon \\, \\frac{1}{n} \\sum_i (\\phi_i - \\theta)`. No second derivatives
and no support/query split: the inner loop trains on all of the task's data. Here
:math:`\\theta - \\phi_i` is written into ``.grad``, so any outer optimiser applies the update
(plain SGD with learning rate :math:`\\epsilon` is the paper's rule).

With one inner step, :math:`\\theta - \\phi = \\alpha \\nabla \\mathcal{L}(\\theta)` and Reptile is SGD on the
task loss with learning rate :math:`\\alpha\\epsilon`; the meta-learning signal appears with two
or more steps (the paper's Taylor-series analysis).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..episodes import Episode
from .inner import adapt, parameters_of
from .maml import MAML

__all__ = ["Reptile"]


class Reptile(MAML):
    """Reptile with the shared functional inner loop; takes the arguments of :class:`~mlcourse.optim.maml.MAML`.

    ``first_order`` is always on (Reptile never differentiates through the inner loop).
    Test-time adaptation and prediction are MAML's (inner steps on the support set).
    """

    def __init__(self, model, inner_lr: float = 0.1, inner_steps: int = 5, **kwargs) -> None:
        kwargs["first_order"] = True
        if kwargs.get("task_batching", "loop") != "loop":
            raise ValueError("Reptile runs its tasks in a loop; task_batching must be 'loop'")
        super().__init__(model, inner_lr=inner_lr, inner_steps=inner_steps, **kwargs)

    def meta_backward(self, tasks: Sequence[Episode]) -> tuple[float, list[torch.Tensor]]:
        """Add :math:`\\frac{1}{n}\\sum_i (\\theta - \\phi_i)` to ``.grad``; returns (mean query loss after adaptation, outputs)."""
        if not tasks:
            raise ValueError("meta_backward needs at least one task")
        theta = parameters_of(self.model)
        total, outs = 0.0, []
        for task in tasks:
            x = torch.cat([task.support_x, task.query_x])
            y = torch.cat([task.support_y, task.query_y])
            phi = adapt(self.model, theta, x, y, self.loss_fn, self.inner_steps, self.inner_lrs(),
                        first_order=True, track_meta_grad=False)
            with torch.no_grad():
                for name, p in theta.items():
                    step = (p - phi[name]) / len(tasks)
                    p.grad = step.clone() if p.grad is None else p.grad.add_(step)
                out = self(task.query_x, phi)
                total += self.loss_fn(out, task.query_y).item() / len(tasks)
            outs.append(out)
        return total, outs

    def meta_loss(self, tasks):
        raise NotImplementedError("Reptile has no differentiable meta-loss; use meta_backward")

    def meta_gradient(self, tasks):
        """The Reptile update direction :math:`\\frac{1}{n}\\sum_i (\\theta - \\phi_i)` by parameter name."""
        saved = {n: (None if p.grad is None else p.grad.clone()) for n, p in self.named_parameters()}
        for p in self.parameters():
            p.grad = None
        self.meta_backward(tasks)
        grads = {n: p.grad.clone() for n, p in self.named_parameters() if p.grad is not None}
        for n, p in self.named_parameters():
            p.grad = saved[n]
        return grads
