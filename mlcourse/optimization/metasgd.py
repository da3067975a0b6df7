"""Meta-SGD (Li, Zhou, Chen and Li, 2017): MAML that also learns a step size per parameter.

The inner update becomes :math:`\\phi = \\theta - \\alpha \\circ \\nabla_\\theta \\mathcal{L}^{\\text{sup}}(\\theta)`
with :math:`\\alpha` a tensor of the same shape as :math:`\\theta`, meta-learned with it by the
outer loop (it may even turn negative). Same inner loop as :class:`~mlcourse.optimization.maml.MAML`;
with :math:`\\alpha` frozen it *is* MAML with those rates.
"""
from __future__ import annotations

import torch
from torch import nn

from .inner import LearningRate, parameters_of
from .maml import MAML

__all__ = ["MetaSGD"]


class MetaSGD(MAML):
    """MAML with learned per-parameter inner learning rates, initialised to ``inner_lr``.

    Takes the arguments of :class:`~mlcourse.optimization.maml.MAML`. The rates are in
    ``self.lrs`` (one :class:`~torch.nn.Parameter` per model parameter, in
    ``self.lr_names`` order) and are returned by ``parameters()``, so one outer optimiser
    trains both.
    """

    def __init__(self, model: nn.Module, *, inner_lr: float = 0.4, **kwargs) -> None:
        super().__init__(model, inner_lr=inner_lr, **kwargs)
        params = parameters_of(model)
        self.lr_names = list(params)
        self.lrs = nn.ParameterList([nn.Parameter(torch.full_like(p, float(inner_lr))) for p in params.values()])

    def inner_lrs(self) -> LearningRate:
        return dict(zip(self.lr_names, self.lrs))
