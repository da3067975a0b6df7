"""Transfer learning: reuse a model trained on one problem for another.

- :mod:`~mlcourse.transfer.finetune`: freezing, fine-tuning with discriminative learning rates
  and gradual unfreezing, CNN codes with a linear classifier, torchvision backbones.
- :mod:`~mlcourse.transfer.pretrained`: few-shot classification by transfer: a classifier of every
  background class, then per episode a linear head (Baseline), a cosine head (Baseline++) or the
  nearest centred, normalised mean (SimpleShot).
- :mod:`~mlcourse.transfer.multitask`: multi-task learning, a shared trunk with one head per task
  trained on the weighted sum of the task losses (Caruana, 1997).
- :mod:`~mlcourse.transfer.distill`: knowledge distillation from a teacher to a smaller student
  (Hinton et al., 2015).
- :mod:`~mlcourse.transfer.domain`: unsupervised domain adaptation: DANN with a gradient
  reversal layer, Deep CORAL, MMD, and CORAL on the inputs.
"""
from .distill import distillation_loss, random_shift, soft_target_loss, train_distilled
from .domain import (DomainAdaptationNet, coral_loss, coral_transform, grad_reverse, mmd_loss,
                     train_domain_adaptation)
from .pretrained import RULES, CosineClassifier, PretrainedClassifier, fit_episode_head
from .multitask import MultiTaskNet, multitask_loss, train_multitask
from .finetune import (TransferNet, extract_features, fine_tune, freeze, layer_groups, linear_probe, param_groups,
                       reinit_head, torchvision_backbone, train_mode, unfreeze)

__all__ = ["distillation_loss", "random_shift", "soft_target_loss", "train_distilled",
           "DomainAdaptationNet", "coral_loss", "coral_transform", "grad_reverse", "mmd_loss",
           "train_domain_adaptation",
           "TransferNet", "extract_features", "fine_tune", "freeze", "layer_groups", "linear_probe", "param_groups",
           "reinit_head", "torchvision_backbone", "train_mode", "unfreeze",
           "MultiTaskNet", "multitask_loss", "train_multitask",
           "PretrainedClassifier", "CosineClassifier", "fit_episode_head", "RULES"]
