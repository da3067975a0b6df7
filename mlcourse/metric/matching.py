"""Matching networks (Vinyals, Blundell, Lillicrap, Kavukcuoglu and Wierstra, NeurIPS 2016).

A query's label distribution is an attention-weighted vote of the support labels:
:math:`P(y = k \\mid \\hat x, S) = \\sum_i a(\\hat x, x_i)\\,[y_i = k]`, with the attention a
softmax over the support set of cosine similarities of the embeddings,
:math:`a(\\hat x, x_i) = e^{c(f(\\hat x), g(x_i))} / \\sum_j e^{c(f(\\hat x), g(x_j))}`. Training
minimises the negative log-probability of the query labels. Here ``f = g`` (one embedding for
queries and support, the paper's variant without full-context embeddings), and the cosine is
used as it is (``scale=1``), as the paper writes it; ``scale`` multiplies it before the softmax
for a sharper attention.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import FewShotClassifier

__all__ = ["MatchingNetwork", "matching_attention"]


def matching_attention(support_z: torch.Tensor, query_z: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Attention of every query over the support set: softmax over support of ``scale * cos``, ``(Q, S)``.

    Each row sums to one.
    """
    cos = F.normalize(query_z.flatten(1), dim=1) @ F.normalize(support_z.flatten(1), dim=1).T
    return torch.softmax(scale * cos, dim=1)


class MatchingNetwork(FewShotClassifier):
    """Attention over the support set with cosine similarity; scores are log-probabilities.

    Args:
        backbone: The embedding of queries and support (e.g. :class:`~mlcourse.backbones.Conv4`).
        scale: Multiplies the cosine similarity before the softmax (1 in the paper).
    """

    def __init__(self, backbone: nn.Module, *, scale: float = 1.0) -> None:
        super().__init__(backbone)
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        self.scale = float(scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"

    def scores(self, support_z, support_y, query_z, n_way):
        """``log P(y = k | query, S)``, ``(Q, n_way)``: the log of the attention summed per support label."""
        counts = torch.bincount(support_y, minlength=n_way)
        if bool((counts == 0).any()):
            missing = torch.nonzero(counts == 0).flatten().tolist()
            raise ValueError(f"the support set has no example of labels {missing}; labels must cover 0..{n_way - 1}")
        attention = matching_attention(support_z, query_z, self.scale)  # (Q, S)
        probs = attention @ F.one_hot(support_y, n_way).to(attention.dtype)  # (Q, n_way), rows sum to one
        return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
