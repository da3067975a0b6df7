"""Evaluating few-shot learners: accuracy over many episodes with a 95% confidence interval.

Few-shot papers report the mean query accuracy over a fixed set of test episodes
(often 600) with the half-width of a 95% confidence interval of that mean,
``1.96 * s / sqrt(n)`` with ``s`` the sample standard deviation (ddof=1).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from .progress import tqdm

from .episodes import Episode

__all__ = ["accuracy_ci", "evaluate_episodes", "Predictor"]

Predictor = Callable[[Episode], torch.Tensor]
"""A function mapping an episode to predicted query labels, shape ``(n_way * n_query,)``."""

Z_95 = 1.959963984540054  # scipy.stats.norm.ppf(0.975)


def accuracy_ci(accuracies: Sequence[float] | np.ndarray | torch.Tensor) -> tuple[float, float]:
    """Mean and 95% confidence half-width of per-episode accuracies.

    Args:
        accuracies: Accuracy of each episode, values in [0, 1], shape ``(n_episodes,)``.

    Returns:
        ``(mean, half_width)`` with ``half_width = 1.96 * std(ddof=1) / sqrt(n)``: the true mean
        lies in ``mean ± half_width`` with about 95% confidence.

    Raises:
        ValueError: With fewer than two episodes (no spread can be estimated), or values
            outside [0, 1] or not finite.
    """
    acc = np.asarray(accuracies.detach().cpu() if isinstance(accuracies, torch.Tensor) else accuracies,
                     dtype=np.float64)
    if acc.ndim != 1:
        raise ValueError(f"accuracies must be one-dimensional (one value per episode), got shape {acc.shape}")
    if acc.size < 2:
        raise ValueError(f"need at least 2 episodes to estimate a confidence interval, got {acc.size}")
    if not np.all(np.isfinite(acc)) or acc.min() < 0 or acc.max() > 1:
        raise ValueError("accuracies must be finite values in [0, 1] (fractions, not percentages)")
    return float(acc.mean()), float(Z_95 * acc.std(ddof=1) / np.sqrt(acc.size))


def evaluate_episodes(predict: Predictor, episodes: Iterable[Episode], progress: bool = True,
                      desc: str = "episodes") -> tuple[float, float, np.ndarray]:
    """Accuracy of ``predict`` over episodes.

    Args:
        predict: Maps an :class:`Episode` to predicted query labels, shape ``(n_way * n_query,)``.
        episodes: The test episodes (e.g. an :class:`~mlcourse.episodes.EpisodeSampler`'s
            ``episodes(dataset)``).
        progress: Show a tqdm progress bar.
        desc: Label of the progress bar.

    Returns:
        ``(mean, half_width, per_episode)``; see :func:`accuracy_ci`.
    """
    accs = []
    for episode in tqdm(episodes, desc=desc, disable=not progress, leave=False):
        pred = torch.as_tensor(predict(episode)).cpu()
        if pred.shape != episode.query_y.shape:
            raise ValueError(f"predict returned shape {tuple(pred.shape)}, expected {tuple(episode.query_y.shape)} "
                             "(one label per query)")
        accs.append((pred == episode.query_y.cpu()).float().mean().item())
    per_episode = np.asarray(accs)
    mean, half = accuracy_ci(per_episode)
    return mean, half, per_episode
