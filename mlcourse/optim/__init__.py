"""Optimization-based meta-learning: MAML (second- and first-order), Meta-SGD and Reptile.

All share the functional inner loop of :mod:`mlcourse.optim.inner`.
"""
from .baselines import adaptation_curve, pretrain_on_tasks
from .cost import autograd_peak_bytes, time_call
from .inner import adapt, functional_forward, inner_step, parameters_of
from .maml import MAML
from .metasgd import MetaSGD
from .reptile import Reptile
from .train import draw_episode, evaluate_learner, meta_train

__all__ = ["MAML", "MetaSGD", "Reptile", "adapt", "inner_step", "functional_forward", "parameters_of",
           "meta_train", "evaluate_learner", "draw_episode", "pretrain_on_tasks", "adaptation_curve", "autograd_peak_bytes", "time_call"]
