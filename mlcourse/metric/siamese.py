"""Siamese networks for one-shot recognition (Koch, Zemel and Salakhutdinov, ICML DL workshop 2015).

Two images go through the same embedding network; a learned head turns the weighted L1
distance of their embeddings into the probability that they show the same class:
:math:`p(\\text{same} \\mid x, x') = \\sigma\\big(w^\\top \\lvert f(x) - f(x') \\rvert + b\\big)`.
It is trained as a binary classifier on same / different pairs (binary cross-entropy), and
used for N-way one-shot classification by giving a query the label of the most similar
support image. With several shots, a class scores its most similar support image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import FewShotClassifier

__all__ = ["SiameseNetwork"]


class SiameseNetwork(FewShotClassifier):
    """Learned pairwise similarity on top of an embedding ``backbone``.

    Args:
        backbone: Image embedding network, output ``(B, D)``.
        embedding_dim: ``D``.
    """

    def __init__(self, backbone: nn.Module, *, embedding_dim: int = 64) -> None:
        super().__init__(backbone)
        self.head = nn.Linear(embedding_dim, 1)

    def pair_logits(self, za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
        """Same-class logit for every pair: ``(A, D)`` x ``(B, D)`` -> ``(A, B)``."""
        return self.head((za[:, None, :] - zb[None, :, :]).abs()).squeeze(-1)

    def similarity(self, xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        """Probability that ``xa[i]`` and ``xb[i]`` show the same class, ``(B,)``."""
        za, zb = self.embed(xa).flatten(1), self.embed(xb).flatten(1)
        return torch.sigmoid(self.head((za - zb).abs()).squeeze(-1))

    @staticmethod
    def _best_per_class(pair: torch.Tensor, support_y: torch.Tensor, n_way: int) -> torch.Tensor:
        """``(Q, S)`` pair logits -> ``(Q, n_way)``: each class scores its most similar support image."""
        out = pair.new_full((pair.shape[0], n_way), float("-inf"))
        return out.scatter_reduce(1, support_y.view(1, -1).expand_as(pair), pair, reduce="amax")

    def scores(self, support_z, support_y, query_z, n_way):
        return self._best_per_class(self.pair_logits(query_z.flatten(1), support_z.flatten(1)), support_y, n_way)

    def episode_loss(self, episode):
        """Binary cross-entropy over every (query, support) pair of the episode, classes balanced."""
        support_z, query_z = self.embed_episode(episode.support_x, episode.query_x)
        pair = self.pair_logits(query_z.flatten(1), support_z.flatten(1))  # (Q, S)
        same = (episode.query_y[:, None] == episode.support_y[None, :]).float()
        n_way = episode.n_way
        pos_weight = torch.tensor(float(n_way - 1), device=pair.device)  # weigh positives as all negatives
        loss = F.binary_cross_entropy_with_logits(pair, same, pos_weight=pos_weight)
        return loss, self._best_per_class(pair.detach(), episode.support_y, n_way)
