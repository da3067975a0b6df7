"""Model-Agnostic Meta-Learning (Finn, Abbeel and Levine, ICML 2017), exact or first-order.

MAML learns an initialisation :math:`\\theta` from which a few gradient steps on a task's
support set give a good model for that task. For one inner step with rate :math:`\\alpha`,

.. math::
    \\phi_i = \\theta - \\alpha \\nabla_\\theta \\mathcal{L}^{\\text{sup}}_i(\\theta), \\qquad
    \\min_\\theta \\sum_i \\mathcal{L}^{\\text{query}}_i(\\phi_i),

and the meta-gradient is :math:`\\sum_i (I - \\alpha \\nabla^2_\\theta \\mathcal{L}^{\\text{sup}}_i)
\\nabla_\\phi \\mathcal{L}^{\\text{query}}_i(\\phi_i)`. The Hessian term is what ``first_order=True``
drops (FOMAML): the meta-gradient becomes just :math:`\\sum_i \\nabla_\\phi
\\mathcal{L}^{\\text{query}}_i(\\phi_i)`.

Tasks of a meta-batch are processed one after the other (``task_batching="loop"``): each
task's graph is freed by its own backward pass, so memory does not grow with the
meta-batch. ``task_batching="vmap"`` vectorises the tasks with :func:`torch.func.vmap`
instead (tasks must then have the same shapes). It refuses models with BatchNorm: with
torch 2.14, gradients through BatchNorm under ``vmap`` with respect to the shared
(un-batched) parameters differ from the per-task loop, by tens of percent, even without
second-order terms, while the loop matches float64 finite differences. Without BatchNorm
the two agree to rounding (tests). Both paths use the one update rule of
:func:`~mlcourse.optimization.inner.update`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..episodes import Episode
from ..learner import StepResult
from .gradient import GradientLearner
from .inner import functional_forward, parameters_of, update

__all__ = ["MAML"]


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


class MAML(GradientLearner):
    """MAML around any ``model``; its parameters are the meta-learned initialisation.

    Args:
        model: The network adapted per task (see :class:`~mlcourse.optimization.gradient.GradientLearner`).
        inner_lr: Inner-loop step size :math:`\\alpha` (0.4 for Omniglot in the paper, 0.01 for sinusoids).
        inner_steps: Inner gradient steps during meta-training.
        first_order: Drop second-order terms (FOMAML).
        loss_fn: ``loss_fn(output, target)``; cross-entropy by default, ``F.mse_loss`` for regression.
        task_batching: ``"loop"`` (per-task backward, default) or ``"vmap"``.
    """

    def __init__(self, model: nn.Module, *, inner_lr: float = 0.4, inner_steps: int = 1, first_order: bool = False,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
                 task_batching: str = "loop") -> None:
        super().__init__(model, inner_lr=inner_lr, inner_steps=inner_steps, loss_fn=loss_fn)
        if task_batching not in ("loop", "vmap"):
            raise ValueError(f"task_batching must be 'loop' or 'vmap', got {task_batching!r}")
        if task_batching == "vmap" and _has_batch_norm(model):
            raise ValueError("task_batching='vmap' gives wrong meta-gradients for models with BatchNorm in current "
                             "PyTorch (checked against the per-task loop); use task_batching='loop'")
        self.first_order, self.task_batching = first_order, task_batching

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, first_order={self.first_order}"

    def task_loss(self, task: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        """``(query loss after adaptation, query outputs)`` of one task, differentiable w.r.t. the initialisation."""
        params = self.adapt(task.support_x, task.support_y, first_order=self.first_order)
        out = self(task.query_x, params)
        return self.loss_fn(out, task.query_y), out

    def meta_loss(self, tasks: Sequence[Episode]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Mean query loss over ``tasks`` with its graph (all tasks' graphs are kept; see :meth:`meta_backward`)."""
        if self.task_batching == "vmap":
            losses, outs = self._vmap_losses(tasks)
            return losses.mean(), list(outs)
        results = [self.task_loss(t) for t in tasks]
        return torch.stack([r[0] for r in results]).mean(), [r[1] for r in results]

    def meta_backward(self, tasks: Sequence[Episode]) -> StepResult:
        """Accumulate the meta-gradient of the mean query loss into ``.grad``.

        With ``task_batching="loop"`` each task is backpropagated on its own, so only one
        task's graph is alive at a time.
        """
        if not tasks:
            raise ValueError("meta_backward needs at least one task")
        if self.task_batching == "vmap":
            loss, outs = self.meta_loss(tasks)
            loss.backward()
            return StepResult(loss.item(), [o.detach() for o in outs])
        total, outs = 0.0, []
        for task in tasks:
            loss, out = self.task_loss(task)
            (loss / len(tasks)).backward()
            total += loss.item() / len(tasks)
            outs.append(out.detach())
        return StepResult(total, outs)

    def _vmap_losses(self, tasks: Sequence[Episode]) -> tuple[torch.Tensor, torch.Tensor]:
        shapes = {(tuple(t.support_x.shape), tuple(t.query_x.shape)) for t in tasks}
        if len(shapes) != 1:
            raise ValueError(f"task_batching='vmap' needs tasks of one shape, got {sorted(shapes)}")
        stack = [torch.stack([getattr(t, f) for t in tasks]) for f in ("support_x", "support_y", "query_x", "query_y")]
        params, lrs = parameters_of(self.model), self.inner_lrs()
        model, loss_fn, first_order, steps = self.model, self.loss_fn, self.first_order, self.inner_steps

        def one_task(sx, sy, qx, qy):
            p = params
            for _ in range(steps):
                p = update(p, torch.func.grad(lambda q: loss_fn(functional_forward(model, q, sx), sy))(p), lrs,
                           first_order)
            out = functional_forward(model, p, qx)
            return loss_fn(out, qy), out

        return torch.func.vmap(one_task, randomness="same")(*stack)
