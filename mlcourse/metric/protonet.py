"""Prototypical networks (Snell, Swersky and Zemel, NeurIPS 2017).

Each class is represented by the mean of its support embeddings, its *prototype*
:math:`c_k = \\frac{1}{K} \\sum_{i: y_i = k} f_\\theta(x_i)`; a query is classified by a
softmax over negative squared Euclidean distances, :math:`p(y = k \\mid x) \\propto
\\exp(-\\lVert f_\\theta(x) - c_k \\rVert^2)`, trained with cross-entropy on the queries.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import FewShotClassifier, class_means

__all__ = ["PrototypicalNetwork", "prototypes", "prototype_logits", "prototypical_loss"]


def prototypes(support_z: torch.Tensor, support_y: torch.Tensor, n_way: int) -> torch.Tensor:
    """Class prototypes: mean support embedding per class.

    Args:
        support_z: Support embeddings, shape ``(n_way * k_shot, D)``.
        support_y: Their labels in ``0..n_way-1``, shape ``(n_way * k_shot,)``.
        n_way: Number of classes.

    Returns:
        Prototypes, shape ``(n_way, D)``; row ``k`` belongs to label ``k``.
    """
    return class_means(support_z, support_y, n_way)


def prototype_logits(query_z: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """Negative squared Euclidean distances, ``(Q, D)`` x ``(N, D)`` -> ``(Q, N)``.

    Computed as ``2 q.c - |q|^2 - |c|^2``: one matrix product, with no ``(Q, N, D)``
    intermediate (memory grows with Q * N, not Q * N * D).
    """
    return 2 * query_z @ protos.T - query_z.pow(2).sum(1, keepdim=True) - protos.pow(2).sum(1)[None, :]


def prototypical_loss(support_z: torch.Tensor, support_y: torch.Tensor, query_z: torch.Tensor,
                      query_y: torch.Tensor, n_way: int) -> torch.Tensor:
    """Cross-entropy of the query labels under :func:`prototype_logits` (a scalar)."""
    return F.cross_entropy(prototype_logits(query_z, prototypes(support_z, support_y, n_way)), query_y)


class PrototypicalNetwork(FewShotClassifier):
    """A prototypical network around any embedding ``backbone`` (e.g. :class:`~mlcourse.backbones.Conv4`)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__(backbone)

    def scores(self, support_z, support_y, query_z, n_way):
        return prototype_logits(query_z.flatten(1), prototypes(support_z.flatten(1), support_y, n_way))
