"""Figures the lectures draw more than once."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from .data.base import CharacterDataset
from .episodes import Episode
from .evaluation import EvalResult

__all__ = ["show_classes", "show_episode", "plot_with_ci"]


def show_classes(dataset: CharacterDataset, n_classes: int = 12, n_drawers: int = 10, seed: int = 0,
                 ax_size: float = 0.6) -> plt.Figure:
    """A grid of drawings: one row per randomly chosen class, ``n_drawers`` drawings per row."""
    rng = np.random.default_rng(seed)
    classes = rng.choice(dataset.n_classes, size=min(n_classes, dataset.n_classes), replace=False)
    fig, axes = plt.subplots(len(classes), n_drawers, figsize=(n_drawers * ax_size + 1.8, len(classes) * ax_size),
                             squeeze=False)
    for row, c in zip(axes, classes):
        idx = np.flatnonzero(dataset.targets == c)[:n_drawers]
        for ax, i in zip(row, idx):
            ax.imshow(dataset.images[i].numpy(), cmap="gray_r", vmin=0, vmax=255)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(f"{dataset.classes[c]}\n{dataset.class_alphabets[c]}", rotation=0, ha="right",
                          va="center", fontsize=7)
    fig.subplots_adjust(wspace=0.05, hspace=0.05, left=0.2)
    return fig


def show_episode(episode: Episode, max_query: int = 5, ax_size: float = 0.8) -> plt.Figure:
    """Support set (left, one row per class) and a few queries per class (right)."""
    n_way, k_shot = episode.n_way, episode.k_shot
    n_q = min(max_query, episode.n_query)
    fig, axes = plt.subplots(n_way, k_shot + n_q, figsize=((k_shot + n_q) * ax_size, n_way * ax_size), squeeze=False)
    for c in range(n_way):
        sup = episode.support_x[episode.support_y == c]
        qry = episode.query_x[episode.query_y == c][:n_q]
        for j, img in enumerate(list(sup) + list(qry)):
            ax = axes[c, j]
            ax.imshow(img.squeeze(0).cpu().numpy(), cmap="gray_r" if j < k_shot else "Blues", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[c, 0].set_ylabel(f"label {c}", rotation=0, ha="right", va="center", fontsize=8)
    axes[0, 0].set_title("support", fontsize=9, loc="left")
    axes[0, k_shot].set_title("query", fontsize=9, loc="left")
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig


def plot_with_ci(ax: plt.Axes, x: Sequence[float], means: Sequence[float] | Sequence[EvalResult],
                 halves: Sequence[float] | None = None, *, label: str | None = None, **kwargs) -> None:
    """Line with a shaded 95% confidence band (mean ± half-width).

    Pass the means and half-widths, or a sequence of :class:`~mlcourse.evaluation.EvalResult` alone.
    """
    if halves is None:
        means, halves = [r.mean for r in means], [r.half_width for r in means]
    x, m, h = (np.asarray(v, dtype=float) for v in (x, means, halves))
    (line,) = ax.plot(x, m, marker="o", label=label, **kwargs)
    ax.fill_between(x, m - h, m + h, color=line.get_color(), alpha=0.2)
