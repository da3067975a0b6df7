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
from torch import nn

from ..episodes import Episode
from ..learner import StepResult
from .gradient import GradientLearner
from .inner import adapt, parameters_of

__all__ = ["Reptile"]


class Reptile(GradientLearner):
    """Reptile with the shared functional inner loop (a sibling of :class:`~mlcourse.optimization.maml.MAML`).

    Args:
        model, loss_fn: As in :class:`~mlcourse.optimization.gradient.GradientLearner`.
        inner_lr: Step size of the inner SGD.
        inner_steps: Inner steps per task (the signal appears from 2 on).
        adapt_on_query: Train the inner loop on the support and query images of a task (the
            course's default) or, with ``False``, on the support set only, so that a learner
            meta-trained on K-shot episodes adapts on K images per class, as it will at test
            time (the query set then only measures the loss).

    Reptile never differentiates through the inner loop. Test-time adaptation and prediction
    are the shared ones (inner steps on the support set).
    """

    def __init__(self, model: nn.Module, *, inner_lr: float = 0.1, inner_steps: int = 5, adapt_on_query: bool = True,
                 **kwargs) -> None:
        super().__init__(model, inner_lr=inner_lr, inner_steps=inner_steps, **kwargs)
        self.adapt_on_query = adapt_on_query

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.adapt_on_query else ", adapt_on_query=False")

    def meta_backward(self, tasks: Sequence[Episode]) -> StepResult:
        """Add :math:`\\frac{1}{n}\\sum_i (\\theta - \\phi_i)` to ``.grad``; the loss is the mean query loss after adaptation."""
        if not tasks:
            raise ValueError("meta_backward needs at least one task")
        theta = parameters_of(self.model)
        total, outs = 0.0, []
        for task in tasks:
            x = torch.cat([task.support_x, task.query_x]) if self.adapt_on_query else task.support_x
            y = torch.cat([task.support_y, task.query_y]) if self.adapt_on_query else task.support_y
            phi = adapt(self.model, theta, x, y, inner_lr=self.inner_lrs(), inner_steps=self.inner_steps,
                        loss_fn=self.loss_fn, first_order=True, track_meta_grad=False)
            with torch.no_grad():
                for name, p in theta.items():
                    step = (p - phi[name]) / len(tasks)
                    p.grad = step.clone() if p.grad is None else p.grad.add_(step)
                out = self(task.query_x, phi)
                total += self.loss_fn(out, task.query_y).item() / len(tasks)
            outs.append(out)
        return StepResult(total, outs)
