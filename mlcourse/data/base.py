"""A labelled set of character images shared by FontGlot and Omniglot.

Both data sets are *alphabets -> characters -> drawings*: each class is one character,
each example one drawing (a handwritten stroke sequence in Omniglot, a font and an
augmentation in FontGlot). Items are ``(image, label)`` with ``image`` a float tensor of
shape ``(1, H, W)``, ink = 1, background = 0, and ``label`` in ``0 .. n_classes-1``.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["CharacterDataset", "carve_validation", "split_per_class", "SPLITS"]

SPLITS = ("background", "validation", "evaluation")


class CharacterDataset(Dataset):
    """Images of characters grouped into classes and alphabets.

    Args:
        images: ``uint8`` images, ink = 255, shape ``(N, H, W)``.
        targets: Class of each image in ``0 .. n_classes-1``, shape ``(N,)``.
        classes: Name of each class, length ``n_classes``.
        class_alphabets: Alphabet of each class, length ``n_classes``.
        transform: Optional function applied to each ``(1, H, W)`` float image.
    """

    def __init__(self, images: np.ndarray | torch.Tensor, targets: Sequence[int] | np.ndarray,
                 classes: Sequence[str], class_alphabets: Sequence[str],
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        images = torch.as_tensor(np.asarray(images))
        if images.ndim != 3 or images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 of shape (N, H, W), got {images.dtype} {tuple(images.shape)}")
        targets = np.asarray(targets, dtype=np.int64)
        if targets.shape != (images.shape[0],):
            raise ValueError(f"need one target per image: {targets.shape[0]} targets for {images.shape[0]} images")
        if len(classes) != len(class_alphabets):
            raise ValueError(f"{len(classes)} class names but {len(class_alphabets)} class alphabets")
        if targets.size and (targets.min() < 0 or targets.max() >= len(classes)):
            raise ValueError(f"targets must lie in 0..{len(classes) - 1}")
        self.images = images
        self.targets = targets
        self.classes = list(classes)
        self.class_alphabets = list(class_alphabets)
        self.transform = transform

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.images[index].unsqueeze(0).float().div_(255.0)  # (1, H, W)
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.targets[index])

    @property
    def alphabets(self) -> list[str]:
        """Names of the alphabets present, in order of first appearance."""
        return list(dict.fromkeys(self.class_alphabets))

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def class_scripts(self) -> list[str]:
        """The script of each class, which is its alphabet's name without a chunk suffix.

        ``"Latin 3/8"`` is ``"Latin"``.

        Large scripts are cut into alphabets of at most a few dozen characters; the script is
        what a reader of the glyph would name.
        """
        return [re.sub(r"\s+\d+/\d+$", "", a) for a in self.class_alphabets]

    @property
    def scripts(self) -> list[str]:
        """Names of the scripts present, in order of first appearance."""
        return list(dict.fromkeys(self.class_scripts))

    def script_targets(self) -> np.ndarray:
        """The script of each *image* as an index into :attr:`scripts`: the labels of a "which script?" task."""
        index = {s: i for i, s in enumerate(self.scripts)}
        return np.array([index[s] for s in self.class_scripts], dtype=np.int64)[self.targets]

    def subset_classes(self, n_classes: int, seed: int = 0) -> "CharacterDataset":
        """A data set with ``n_classes`` classes drawn at random (labels renumbered ``0..n_classes-1``)."""
        if not 1 <= n_classes <= self.n_classes:
            raise ValueError(f"n_classes must be between 1 and {self.n_classes}, got {n_classes}")
        keep = np.sort(np.random.default_rng(seed).choice(self.n_classes, n_classes, replace=False))
        remap = np.full(self.n_classes, -1)
        remap[keep] = np.arange(n_classes)
        mask = remap[self.targets] >= 0
        return CharacterDataset(self.images[torch.as_tensor(mask)], remap[self.targets[mask]],
                                [self.classes[c] for c in keep], [self.class_alphabets[c] for c in keep],
                                self.transform)

    def tensors(self, n_train: int | None = None, seed: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The whole set as tensors ``(x (N, 1, H, W) in [0, 1], y (N,))``, for ordinary classification.

        With ``n_train``, split every class: ``n_train`` random images of each class for training,
        the rest for testing; returns ``(x_train, y_train, x_test, y_test)``.
        """
        x = self.images.float().unsqueeze(1) / 255.0
        y = torch.as_tensor(self.targets)
        if n_train is None:
            return x, y
        train, test = split_per_class(self.targets, n_train, seed)
        return x[train], y[train], x[test], y[test]

    def __repr__(self) -> str:
        h, w = self.images.shape[1:]
        return (f"{type(self).__name__}({len(self)} images of {h}x{w}, {self.n_classes} classes, "
                f"{len(self.alphabets)} alphabets)")


def carve_validation(alphabet_sizes: dict[str, int], fraction: float, seed: int) -> set[str]:
    """Pick whole alphabets for validation until they hold at least ``fraction`` of the classes.

    Args:
        alphabet_sizes: Number of classes of each background alphabet.
        fraction: Target share of classes for validation, in (0, 1).
        seed: Seed of the (deterministic) choice.

    Returns:
        The names of the validation alphabets.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    names = sorted(alphabet_sizes)
    order = np.random.default_rng(seed).permutation(len(names))
    total, chosen, count = sum(alphabet_sizes.values()), set(), 0
    for i in order:
        if count >= fraction * total or len(chosen) >= len(names) - 1:
            break
        chosen.add(names[i])
        count += alphabet_sizes[names[i]]
    return chosen


def split_per_class(targets: Sequence[int] | np.ndarray, n_train: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``n_train`` random examples of every class, and of all the others.

    Raises a clear error when a class has no more than ``n_train`` examples (nothing would be
    left to test on).
    """
    targets = np.asarray(targets)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(targets):
        idx = rng.permutation(np.flatnonzero(targets == c))
        if len(idx) <= n_train:
            raise ValueError(f"class {c} has {len(idx)} examples: cannot take {n_train} for training and keep "
                             f"some for testing; ask for at most {len(idx) - 1}")
        train.append(idx[:n_train])
        test.append(idx[n_train:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
