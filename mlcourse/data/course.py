"""The course's character data, one switch away from the real Omniglot.

Every lecture, exercise and experiment spec reads its few-shot data through
:func:`course_data`. By default that is FontGlot, built offline. Two environment variables
switch the whole course to Omniglot (Lake et al. 2015) when you have its files:

- ``MLCOURSE_DATASET=omniglot`` (default ``fontglot``);
- ``MLCOURSE_OMNIGLOT=DIR``: the folder holding ``images_background`` and
  ``images_evaluation`` (folders or the official zips);
- ``MLCOURSE_OMNIGLOT_ROTATIONS=1`` (optional): each character rotated by 90, 180 and 270
  degrees becomes three more classes, as in Vinyals et al. (2016).

The splits are the same on both: ``background`` (meta-training), ``validation`` (whole
alphabets carved from background, for model selection) and ``evaluation`` (meta-testing).
"""
from __future__ import annotations

import os

import numpy as np
import torch

from ..config import is_quick
from .base import SPLITS, CharacterDataset

__all__ = ["DATASETS", "dataset_name", "course_data", "with_rotations"]

DATASETS = ("fontglot", "omniglot")


def dataset_name() -> str:
    """The data set the course runs on: ``$MLCOURSE_DATASET`` (``fontglot`` or ``omniglot``)."""
    name = os.environ.get("MLCOURSE_DATASET", "fontglot").strip().lower() or "fontglot"
    if name not in DATASETS:
        raise ValueError(f"MLCOURSE_DATASET={name!r} is not a data set of the course; use one of {DATASETS}")
    return name


def _rotations() -> bool:
    return os.environ.get("MLCOURSE_OMNIGLOT_ROTATIONS", "").strip().lower() in {"1", "true", "yes", "on"}


def with_rotations(dataset: CharacterDataset) -> CharacterDataset:
    """``dataset`` with each class also rotated by 90, 180 and 270 degrees, as three new classes."""
    images = [dataset.images] + [torch.rot90(dataset.images, k, dims=(1, 2)) for k in (1, 2, 3)]
    n = dataset.n_classes
    targets = np.concatenate([dataset.targets + k * n for k in range(4)])
    classes = [f"{c} rot{90 * k}" if k else c for k in range(4) for c in dataset.classes]
    return CharacterDataset(torch.cat(images), targets, classes, dataset.class_alphabets * 4, dataset.transform)


def course_data(split: str, *, preset: str | None = None) -> CharacterDataset:
    """The course's ``split`` (``background``, ``validation`` or ``evaluation``) of the chosen data set.

    Args:
        split: Which split.
        preset: FontGlot's build (``"full"`` or ``"tiny"``); by default ``"tiny"`` in quick
            mode (``MLCOURSE_QUICK=1``) and ``"full"`` otherwise. Omniglot has one size.

    Raises:
        ValueError: For an unknown split or data set, or ``MLCOURSE_DATASET=omniglot`` without
            ``MLCOURSE_OMNIGLOT``.
        FileNotFoundError: If ``MLCOURSE_OMNIGLOT`` does not hold Omniglot's files.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    if dataset_name() == "fontglot":
        from .fontglot import FontGlot

        return FontGlot(split, preset=preset or ("tiny" if is_quick() else "full"))
    root = os.environ.get("MLCOURSE_OMNIGLOT", "").strip()
    if not root:
        raise ValueError("MLCOURSE_DATASET=omniglot needs MLCOURSE_OMNIGLOT=DIR, the folder that holds "
                         "images_background and images_evaluation (folders or zips); see the data page of the book")
    from .omniglot import Omniglot

    data = Omniglot(root, split)
    return with_rotations(data) if _rotations() else data
