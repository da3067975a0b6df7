"""The shared shape of metric-based few-shot classifiers: embed, compare with the support set.

Every method here embeds support and query images with a backbone, then scores each
(query, class) pair from the embeddings. Subclasses implement ``scores``; the rest
(embedding, prediction, the loss, the meta-step of the learner protocol) is shared. They are
:class:`~mlcourse.learner.EmbeddingLearner` s: the evaluator embeds the test set once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from collections.abc import Sequence

from ..episodes import Episode
from ..learner import StepResult

__all__ = ["FewShotClassifier"]


class FewShotClassifier(nn.Module):
    """Base class: ``forward(support_x, support_y, query_x)`` -> scores ``(Q, n_way)``.

    Args:
        backbone: Maps images ``(B, C, H, W)`` to embeddings ``(B, ...)``.

    In training mode a backbone with BatchNorm normalises with the statistics of the batch it
    sees. By default support and query images are embedded as one batch
    (``embed_jointly``, as in the prototypical networks' reference code), so the statistics
    cover both; set ``embed_jointly = False`` on a model to embed the support set and the
    queries as two batches (easyfsl's convention). In eval mode, and for backbones without
    batch statistics, the two give the same scores.
    """

    #: Embed support and queries in one batch (``True``) or as two (``False``); see above.
    embed_jointly: bool = True

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings of images, ``(B, C, H, W)`` -> ``(B, ...)``."""
        return self.backbone(x)

    def scores(self, support_z: torch.Tensor, support_y: torch.Tensor, query_z: torch.Tensor,
               n_way: int) -> torch.Tensor:
        """Score of every (query, class) pair from embeddings; higher means more likely. ``(Q, n_way)``."""
        raise NotImplementedError

    def forward(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
        """Scores ``(Q, n_way)`` of queries ``(Q, C, H, W)`` given the support set ``(S, C, H, W)``, ``(S,)``."""
        n_way = int(support_y.max()) + 1
        support_z, query_z = self.embed_episode(support_x, query_x)
        return self.scores(support_z, support_y, query_z, n_way)

    def embed_episode(self, support_x: torch.Tensor, query_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(support embeddings, query embeddings)``, in one batch or two (``embed_jointly``)."""
        if not self.embed_jointly:
            return self.embed(support_x), self.embed(query_x)
        z = self.embed(torch.cat([support_x, query_x]))  # one pass keeps BatchNorm statistics joint
        return z[: len(support_x)], z[len(support_x):]

    def loss(self, scores: torch.Tensor, query_y: torch.Tensor) -> torch.Tensor:
        """Training loss from the scores ``(Q, n_way)`` and labels ``(Q,)``; cross-entropy by default."""
        return F.cross_entropy(scores, query_y)

    def episode_loss(self, episode: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, scores)`` of one episode already on the model's device."""
        scores = self(episode.support_x, episode.support_y, episode.query_x)
        return self.loss(scores, episode.query_y), scores

    def meta_step(self, tasks: Sequence[Episode], optimizer: torch.optim.Optimizer) -> StepResult:
        """One optimizer step on the mean episode loss of ``tasks`` (one episode per step in the papers)."""
        if not tasks:
            raise ValueError("meta_step needs at least one task")
        optimizer.zero_grad(set_to_none=True)
        total, outputs = 0.0, []
        for task in tasks:  # one backward per task: only one task's graph is alive at a time
            loss, scores = self.episode_loss(task)
            (loss / len(tasks)).backward()
            total += loss.item() / len(tasks)
            outputs.append(scores.detach())
        optimizer.step()
        return StepResult(total, outputs)

    @torch.no_grad()
    def predict(self, episode: Episode) -> torch.Tensor:
        """Predicted query labels ``(Q,)``."""
        return self(episode.support_x, episode.support_y, episode.query_x).argmax(dim=1)


def class_means(z: torch.Tensor, y: torch.Tensor, n_way: int) -> torch.Tensor:
    """Mean of the rows of ``z`` ``(S, ...)`` per label ``y`` ``(S,)`` in ``0..n_way-1`` -> ``(n_way, ...)``."""
    counts = torch.bincount(y, minlength=n_way)
    if bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"the support set has no example of labels {missing}; labels must cover 0..{n_way - 1}")
    sums = torch.zeros((n_way, *z.shape[1:]), dtype=z.dtype, device=z.device).index_add_(0, y, z)
    return sums / counts.view(-1, *([1] * (z.dim() - 1))).to(z.dtype)
