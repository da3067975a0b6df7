"""The baseline that learns nothing: nearest neighbour in pixel space, against which every method is measured."""
from __future__ import annotations

import torch

from ..episodes import Episode

__all__ = ["pixel_nearest_neighbour"]


def pixel_nearest_neighbour(episode: Episode) -> torch.Tensor:
    """Label each query with the label of the closest support image in raw pixel space.

    Distance is Euclidean on flattened pixels; with ``k_shot > 1`` each query takes the label
    of its single nearest support example (1-nearest neighbour).

    Args:
        episode: support_x ``(n_way * k_shot, C, H, W)``, query_x ``(n_way * n_query, C, H, W)``.

    Returns:
        Predicted query labels, shape ``(n_way * n_query,)``.
    """
    support = episode.support_x.flatten(1).float()  # (S, D)
    query = episode.query_x.flatten(1).float()  # (Q, D)
    dist = torch.cdist(query, support)  # (Q, S)
    return episode.support_y[dist.argmin(dim=1)]
