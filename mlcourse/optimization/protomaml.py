"""Proto-MAML (Triantafillou et al., ICLR 2020, "Meta-Dataset"): MAML whose head starts as a prototypical network.

A prototypical network is a linear classifier on the embeddings: since
:math:`-\\lVert z - c_k \\rVert^2 = 2 c_k^\\top z - \\lVert c_k \\rVert^2 - \\lVert z \\rVert^2` and the last
term is the same for every class, the softmax over negative squared distances equals the
softmax of a linear layer with weights :math:`W_k = 2 c_k` and bias :math:`b_k = -\\lVert c_k \\rVert^2`.
Proto-MAML initialises each task's head that way from the support prototypes :math:`c_k`, then
takes MAML's inner steps on the body and the head together. The initial head depends on the
body, so the meta-gradient also flows through the initialisation (in the first-order variant
too, as the paper's fo-Proto-MAML keeps it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..metric.base import class_means
from .inner import Params, functional_forward, parameters_of, update
from .maml import MAML

__all__ = ["ProtoMAML", "prototype_head"]

HEAD = ("head.weight", "head.bias")


def prototype_head(support_z: torch.Tensor, support_y: torch.Tensor, n_way: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear layer equal to a prototypical network: ``(W, b) = (2 c, -|c|^2)`` from the class means ``c``."""
    c = class_means(support_z.flatten(1), support_y, n_way)
    return 2 * c, -c.pow(2).sum(1)


class ProtoMAML(MAML):
    """MAML on an embedding ``model`` (no head: e.g. ``Conv4(track_running_stats=False)``) with a prototype head.

    Takes the arguments of :class:`~mlcourse.optimization.maml.MAML` (tasks are processed one
    after the other); the number of classes is read from each task's support labels. The
    adapted parameters are the body's by name plus ``head.weight`` and ``head.bias``.
    """

    def __init__(self, model: nn.Module, **kwargs) -> None:
        if kwargs.get("task_batching", "loop") != "loop":
            raise ValueError("ProtoMAML processes the tasks one after the other (task_batching='loop')")
        super().__init__(model, **kwargs)

    def adapt(self, x, y, *, inner_steps=None, first_order=False, track_meta_grad=True) -> Params:
        """Body and head adapted to the support set; the head starts at :func:`prototype_head`.

        Every inner step is MAML's step on the body and the head as *separate* variables: the
        gradient for the body holds the head fixed, even though the head's start was computed
        from the body (that dependence is what the outer gradient follows, not the inner one).
        ``torch.func.grad`` gives these partial derivatives and keeps them differentiable for
        the exact meta-gradient.
        """
        steps = self.inner_steps if inner_steps is None else inner_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"inner_steps must be an int >= 0, got {steps!r}")
        fo = first_order or not track_meta_grad
        with torch.enable_grad():
            body = parameters_of(self.model)
            if not track_meta_grad:
                body = {n: p.detach() for n, p in body.items()}
            w, b = prototype_head(functional_forward(self.model, body, x), y, int(y.max()) + 1)
            params = {**body, HEAD[0]: w, HEAD[1]: b}

            def support_loss(p):
                return self.loss_fn(self(x, p), y)

            for _ in range(steps):
                grads = torch.func.grad(support_loss)(params)  # partial derivatives, one per variable
                params = update(params, grads, self.inner_lrs(), fo)
                if not track_meta_grad:
                    params = {n: p.detach() for n, p in params.items()}
        return params

    def forward(self, x, params: Params | None = None):
        """Logits of ``x`` under adapted ``params`` (body and head); embeddings when ``params`` is ``None``."""
        if params is None:
            return self.model(x)
        z = functional_forward(self.model, {n: p for n, p in params.items() if n not in HEAD}, x)
        return F.linear(z.flatten(1), params[HEAD[0]], params[HEAD[1]])
