"""N-way K-shot episodes: the unit of data in few-shot learning.

An *episode* (or *task*) draws ``n_way`` classes from a labelled data set, then
``k_shot`` labelled *support* examples and ``n_query`` *query* examples from each
class. Labels are remapped to ``0 .. n_way - 1`` so that a model never sees the
original class ids: it must learn from the support set alone.

Example:
    >>> sampler = EpisodeSampler(dataset, n_way=5, k_shot=1, n_query=15, n_tasks=100, seed=0)
    >>> loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler,
    ...                                      collate_fn=sampler.collate)
    >>> for episode in loader:
    ...     episode.support_x.shape   # (5 * 1, 1, 28, 28)
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["Episode", "EpisodeSampler", "sample_episode_indices", "labels_of", "check_episode_request", "draw_episode",
           "images_of"]


@dataclass
class Episode:
    """One N-way K-shot task.

    Attributes:
        support_x: Support inputs, shape ``(n_way * k_shot, *input_shape)``, grouped by class.
        support_y: Support labels in ``0 .. n_way-1``, shape ``(n_way * k_shot,)``.
        query_x: Query inputs, shape ``(n_way * n_query, *input_shape)``, grouped by class.
        query_y: Query labels in ``0 .. n_way-1``, shape ``(n_way * n_query,)``.
        classes: The original class ids; ``classes[i]`` is episode label ``i``. Shape ``(n_way,)``.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    classes: torch.Tensor

    @property
    def n_way(self) -> int:
        return int(self.classes.numel())

    @property
    def k_shot(self) -> int:
        return int(self.support_y.numel()) // self.n_way

    @property
    def n_query(self) -> int:
        return int(self.query_y.numel()) // self.n_way

    def to(self, device: torch.device | str) -> "Episode":
        """Return a copy with every tensor on ``device``."""
        return Episode(*(t.to(device) for t in (self.support_x, self.support_y, self.query_x,
                                                  self.query_y, self.classes)))


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return int(value)


def check_episode_request(labels: Mapping[int, int] | Sequence[int] | np.ndarray, n_way: int, k_shot: int,
                          n_query: int) -> None:
    """Raise a :class:`ValueError` naming the numbers if the episodes cannot be drawn.

    Args:
        labels: The class id of every example ``(N,)``, or the number of examples per class id.
        n_way: Classes per episode.
        k_shot: Support examples per class.
        n_query: Query examples per class.
    """
    if isinstance(labels, Mapping):
        class_sizes = dict(labels)
    else:
        unique, counts = np.unique(np.asarray(labels), return_counts=True)
        class_sizes = dict(zip(unique.tolist(), counts.tolist()))
    n_way = _check_positive_int("n_way", n_way)
    k_shot = _check_positive_int("k_shot", k_shot)
    n_query = _check_positive_int("n_query", n_query)
    if n_way > len(class_sizes):
        raise ValueError(
            f"n_way={n_way} is larger than the number of classes in the data set ({len(class_sizes)}); "
            f"ask for at most {len(class_sizes)} ways"
        )
    need = k_shot + n_query
    small = {c: s for c, s in class_sizes.items() if s < need}
    if small:
        c, s = min(small.items(), key=lambda kv: kv[1])
        raise ValueError(
            f"k_shot + n_query = {k_shot} + {n_query} = {need} examples per class are needed, but class {c} "
            f"has only {s} ({len(small)} of {len(class_sizes)} classes are too small); "
            f"lower k_shot or n_query to at most {s} in total"
        )


def sample_episode_indices(
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    n_way: int,
    k_shot: int,
    n_query: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw the indices of one episode.

    The draw is fully specified, so two implementations given the same generator
    agree: first ``classes = rng.choice(np.unique(labels), n_way, replace=False)``;
    then, for each class in that order, ``rng.choice(indices_of_class, k_shot + n_query,
    replace=False)`` whose first ``k_shot`` entries are support and the rest query.

    Args:
        labels: Class id of every example in the data set, shape ``(N,)``.
        n_way: Number of classes in the episode.
        k_shot: Support examples per class.
        n_query: Query examples per class.
        rng: A :func:`numpy.random.default_rng` generator.

    Returns:
        ``(support_idx, query_idx, classes)`` with shapes ``(n_way * k_shot,)``,
        ``(n_way * n_query,)`` and ``(n_way,)``. Indices are grouped by class in the
        order of ``classes``.

    Raises:
        ValueError: If the request cannot be met (too many ways, too few examples in a class,
            non-positive sizes).
    """
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    unique, counts = np.unique(labels, return_counts=True)
    check_episode_request(dict(zip(unique.tolist(), counts.tolist())), n_way, k_shot, n_query)
    classes = rng.choice(unique, n_way, replace=False)
    support, query = [], []
    for c in classes:
        chosen = rng.choice(np.flatnonzero(labels == c), k_shot + n_query, replace=False)
        support.append(chosen[:k_shot])
        query.append(chosen[k_shot:])
    return np.concatenate(support), np.concatenate(query), classes


def labels_of(dataset: Dataset | Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
    """Return the class id of every example, shape ``(N,)``.

    Uses ``dataset.targets`` when present (FontGlot, Omniglot, torchvision data sets);
    otherwise reads the label of each item (slow for large data sets).
    """
    if isinstance(dataset, (np.ndarray, torch.Tensor, list, tuple)):
        return np.asarray(dataset.cpu() if isinstance(dataset, torch.Tensor) else dataset)
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return np.asarray(targets.cpu() if isinstance(targets, torch.Tensor) else targets)
    try:
        return np.asarray([int(dataset[i][1]) for i in range(len(dataset))])  # type: ignore[arg-type]
    except (TypeError, IndexError) as err:
        raise TypeError(
            "cannot read labels: pass a data set with a `targets` attribute or items (x, label), "
            "or pass the labels themselves"
        ) from err


class EpisodeSampler(Sampler[list[int]]):
    """Yield the indices of ``n_tasks`` episodes; use it as a DataLoader ``batch_sampler``.

    Each item is the list of data-set indices of one episode: support first (grouped by
    class), then query. :meth:`collate` turns the fetched ``(x, y)`` items into an
    :class:`Episode`. The same ``seed`` gives the same episodes, every epoch.

    Args:
        dataset: A labelled data set (or its labels, shape ``(N,)``).
        n_way: Classes per episode.
        k_shot: Support examples per class.
        n_query: Query examples per class.
        n_tasks: Episodes per pass.
        seed: Seed of the episode stream.
    """

    def __init__(self, dataset: Dataset | Sequence[int] | np.ndarray, n_way: int, k_shot: int,
                 n_query: int, n_tasks: int, seed: int = 0) -> None:
        self.labels = labels_of(dataset)
        check_episode_request(self.labels, n_way, k_shot, n_query)
        self.n_way, self.k_shot, self.n_query = int(n_way), int(k_shot), int(n_query)
        self.n_tasks = _check_positive_int("n_tasks", n_tasks)
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.n_tasks

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng(self.seed)
        for _ in range(self.n_tasks):
            support, query, _ = sample_episode_indices(self.labels, self.n_way, self.k_shot, self.n_query, rng)
            yield np.concatenate([support, query]).tolist()

    def collate(self, items: list[tuple[torch.Tensor, int]]) -> Episode:
        """Turn the ``n_way * (k_shot + n_query)`` fetched items of one episode into an :class:`Episode`."""
        xs = torch.stack([torch.as_tensor(x) for x, _ in items])
        ys = torch.as_tensor([int(y) for _, y in items])
        n_support = self.n_way * self.k_shot
        classes = ys[:n_support:self.k_shot]
        remap = {int(c): i for i, c in enumerate(classes)}
        local = torch.as_tensor([remap[int(y)] for y in ys])
        return Episode(xs[:n_support], local[:n_support], xs[n_support:], local[n_support:], classes)

    def episodes(self, dataset: Dataset) -> Iterator[Episode]:
        """Iterate over the episodes directly, without a DataLoader."""
        for idx in self:
            yield self.collate([dataset[i] for i in idx])


def images_of(dataset: Dataset, idx: np.ndarray | Sequence[int]) -> torch.Tensor:
    """The inputs of ``dataset`` at ``idx``, stacked ``(len(idx), ...)``.

    Reads the ``uint8`` image tensor directly when the data set has one and no transform
    (FontGlot, Omniglot), otherwise goes through ``dataset[i]``.
    """
    images = getattr(dataset, "images", None)
    if images is not None and getattr(dataset, "transform", None) is None:
        return images[torch.as_tensor(np.asarray(idx))].unsqueeze(1).float().div_(255.0)
    return torch.stack([torch.as_tensor(dataset[int(i)][0]) for i in idx])


def draw_episode(dataset: Dataset, *, n_way: int, k_shot: int, n_query: int, rng: np.random.Generator,
                 labels: np.ndarray | None = None) -> Episode:
    """One episode of ``dataset`` drawn with ``rng`` (see :func:`sample_episode_indices`).

    Args:
        dataset: A labelled data set.
        n_way, k_shot, n_query: The episode shape.
        rng: A :func:`numpy.random.default_rng` generator; the same state gives the same episode.
        labels: ``labels_of(dataset)``, to avoid reading them again at every draw.
    """
    labels = labels_of(dataset) if labels is None else labels
    s, q, classes = sample_episode_indices(labels, n_way, k_shot, n_query, rng)
    return Episode(images_of(dataset, s), torch.arange(n_way).repeat_interleave(k_shot), images_of(dataset, q),
                   torch.arange(n_way).repeat_interleave(n_query), torch.as_tensor(classes))
