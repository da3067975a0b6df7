"""ANIL, "almost no inner loop" (Raghu, Raghu, Bengio and Vinyals, ICLR 2020): MAML that adapts only the head.

Raghu et al. ask whether MAML's inner loop changes the representation (rapid learning) or
reuses it (feature reuse). Their answer is ANIL: the inner loop updates only the last layer,
:math:`\\phi_{\\text{head}} = \\theta_{\\text{head}} - \\alpha \\nabla_{\\theta_{\\text{head}}}
\\mathcal{L}^{\\text{sup}}(\\theta_{\\text{body}}, \\theta_{\\text{head}})`, the body
:math:`\\theta_{\\text{body}}` is the same for every task, and the outer loop still trains both
(the meta-gradient reaches the body through the support features and the query features).
The support images go through the body once per task instead of once per inner step. With
``first_order=True`` the head's inner gradients are constants, so the meta-gradient reaches the
body only through the query features.
"""
from __future__ import annotations

from torch import nn

from .inner import Params, adapt, functional_forward, parameters_of
from .maml import MAML

__all__ = ["ANIL"]


class ANIL(MAML):
    """MAML whose inner loop adapts only ``head``; ``model`` is ``nn.Sequential(body, head)``.

    Takes the arguments of :class:`~mlcourse.optimization.maml.MAML` (tasks are processed one
    after the other). The adapted parameters are the head's, by the head's own names.
    """

    def __init__(self, model: nn.Module, **kwargs) -> None:
        if not isinstance(model, nn.Sequential) or len(model) < 2:
            raise ValueError("ANIL needs model = nn.Sequential(body, ..., head): its last module is the head the "
                             "inner loop adapts")
        if kwargs.get("task_batching", "loop") != "loop":
            raise ValueError("ANIL processes the tasks one after the other (task_batching='loop')")
        super().__init__(model, **kwargs)

    @property
    def body(self) -> nn.Module:
        return self.model[:-1]

    @property
    def head(self) -> nn.Module:
        return self.model[-1]

    def adapt(self, x, y, *, inner_steps=None, first_order=False, track_meta_grad=True) -> Params:
        """The head's parameters adapted to the support set; the body is run once and never updated."""
        features = self.body(x)
        if not track_meta_grad:
            features = features.detach()
        return adapt(self.head, parameters_of(self.head), features, y, inner_lr=self.inner_lrs(),
                     inner_steps=self.inner_steps if inner_steps is None else inner_steps, loss_fn=self.loss_fn,
                     first_order=first_order, track_meta_grad=track_meta_grad)

    def forward(self, x, params: Params | None = None):
        """The output on ``x`` with the head's ``params`` (its own when ``None``); the body is the shared one."""
        return self.model(x) if params is None else functional_forward(self.head, params, self.body(x))
