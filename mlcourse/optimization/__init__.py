"""Optimization-based meta-learning: MAML (second- and first-order), ANIL, Proto-MAML, Meta-SGD and Reptile.

All are :class:`~mlcourse.optimization.gradient.GradientLearner` s sharing the functional
inner loop of :mod:`mlcourse.optimization.inner`; MAML and Reptile differ only in the outer
gradient.
"""
from .anil import ANIL
from .cost import autograd_peak_bytes
from .gradient import GradientLearner
from .inner import adapt, functional_forward, inner_step, parameters_of, update
from .maml import MAML
from .metasgd import MetaSGD
from .protomaml import ProtoMAML, prototype_head
from .pretrain import adaptation_curve, pretrain_on_tasks
from .reptile import Reptile

__all__ = ["GradientLearner", "MAML", "ANIL", "ProtoMAML", "prototype_head", "MetaSGD", "Reptile", "adapt", "inner_step", "update", "functional_forward",
           "parameters_of", "pretrain_on_tasks", "adaptation_curve", "autograd_peak_bytes"]
