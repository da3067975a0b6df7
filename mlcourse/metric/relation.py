"""Relation networks (Sung, Yang, Zhang, Xiang, Torr and Hospedales, CVPR 2018).

Instead of a fixed distance, a *relation module* :math:`g_\\phi` learns to compare: the
feature map of a query is concatenated with the feature map of a class (the sum of its
support feature maps) and :math:`g_\\phi` outputs a relation score in [0, 1]. Training
regresses the scores onto one-hot targets with a mean squared error, as in the paper.
For 28x28 inputs the embedding keeps 64x7x7 feature maps (pooling in the first two blocks
only); the relation module has two conv blocks and two fully connected layers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import conv_block
from .base import FewShotClassifier, class_means

__all__ = ["RelationNetwork", "RelationEmbedding"]


class RelationEmbedding(nn.Module):
    """Four conv blocks, pooling in the first two: ``(B, 1, 28, 28)`` -> ``(B, 64, 7, 7)``."""

    def __init__(self, in_channels: int = 1, hidden: int = 64) -> None:
        super().__init__()
        self.encoder = nn.Sequential(conv_block(in_channels, hidden), conv_block(hidden, hidden),
                                     conv_block(hidden, hidden, pool=False), conv_block(hidden, hidden, pool=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class RelationNetwork(FewShotClassifier):
    """Embedding + learned relation module; scores are relation logits (sigmoid gives [0, 1]).

    Args:
        backbone: Produces feature maps ``(B, hidden, h, w)``; default :class:`RelationEmbedding`.
        hidden: Channels of the feature maps.
        relation_dim: Width of the first fully connected layer of the relation module.
        aggregate: How a class's support feature maps are combined: ``"sum"`` as in the paper,
            or ``"mean"``. They agree at one shot; a model trained at one shot and tested at K
            shots sees K times larger class features with ``"sum"`` (and fails, lecture 2),
            while ``"mean"`` keeps them on the training scale.
    """

    def __init__(self, backbone: nn.Module | None = None, *, hidden: int = 64, relation_dim: int = 8,
                 aggregate: str = "sum") -> None:
        super().__init__(backbone if backbone is not None else RelationEmbedding(hidden=hidden))
        if aggregate not in ("sum", "mean"):
            raise ValueError(f"aggregate must be 'sum' or 'mean', got {aggregate!r}")
        self.aggregate = aggregate
        self.relation = nn.Sequential(conv_block(2 * hidden, hidden), conv_block(hidden, hidden),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                      nn.Linear(hidden, relation_dim), nn.ReLU(), nn.Linear(relation_dim, 1))

    def scores(self, support_z, support_y, query_z, n_way):
        classes = class_means(support_z, support_y, n_way)  # (N, C, h, w)
        if self.aggregate == "sum":
            classes = classes * torch.bincount(support_y, minlength=n_way).view(-1, 1, 1, 1).to(classes.dtype)
        q, n = len(query_z), n_way
        pairs = torch.cat([classes[None].expand(q, -1, -1, -1, -1),
                           query_z[:, None].expand(-1, n, -1, -1, -1)], dim=2)  # (Q, N, 2C, h, w)
        return self.relation(pairs.flatten(0, 1)).view(q, n)

    def loss(self, scores, query_y):
        """Mean squared error between sigmoid relation scores and one-hot targets."""
        return F.mse_loss(torch.sigmoid(scores), F.one_hot(query_y, scores.shape[1]).float())
