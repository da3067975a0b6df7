"""Transfer learning: reuse a model trained on one problem for another.

``distill``: knowledge distillation from a teacher to a smaller student (Hinton et al., 2015).
"""
from .distill import distillation_loss, soft_target_loss, train_distilled

__all__ = ["distillation_loss", "soft_target_loss", "train_distilled"]
