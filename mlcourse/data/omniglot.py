"""Omniglot (Lake et al. 2015), read from files you already have, with FontGlot's interface.

Omniglot has 1,623 handwritten characters from 50 alphabets, each drawn by 20 people:
``images_background`` (30 alphabets, for meta-training) and ``images_evaluation``
(20 alphabets, for meta-testing). :class:`Omniglot` reads either the two folders or the
two zip files of the official release, in any of these places under ``root``::

    root/images_background/<Alphabet>/<character>/<drawing>.png
    root/images_background.zip
    root/omniglot-py/images_background/...   (where torchvision downloads to)

With ``download=True`` (needs a network), torchvision's downloader fetches the zips first.
Images are inverted so that ink = 1, as in FontGlot, and resized to ``image_size``.

Reference: B. M. Lake, R. Salakhutdinov, J. B. Tenenbaum. Human-level concept learning
through probabilistic program induction. Science, 2015.
"""
from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .base import SPLITS, CharacterDataset, carve_validation

__all__ = ["Omniglot", "find_omniglot"]

_PARTS = {"background": "images_background", "validation": "images_background", "evaluation": "images_evaluation"}
_MEMO: dict[tuple[str, int], tuple[np.ndarray, np.ndarray, list[str], list[str]]] = {}


def find_omniglot(root: str | os.PathLike, part: str) -> Path | None:
    """Path of the folder or zip of ``part`` (``images_background`` / ``images_evaluation``) under ``root``."""
    root = Path(root).expanduser()
    for base in (root, root / "omniglot-py"):
        for candidate in (base / part, base / f"{part}.zip"):
            if candidate.exists():
                return candidate
    return None


def _drawings(source: Path, part: str) -> Iterator[tuple[str, str, bytes]]:
    """Yield ``(alphabet, character, png bytes)`` from a folder or a zip, sorted by path."""
    if source.is_dir():
        for png in sorted(source.glob("*/*/*.png")):
            yield png.parent.parent.name, png.parent.name, png.read_bytes()
        return
    with zipfile.ZipFile(source) as zf:
        for name in sorted(n for n in zf.namelist() if n.endswith(".png")):
            parts = Path(name).parts
            if part in parts:
                parts = parts[parts.index(part) + 1:]
            if len(parts) == 3:
                yield parts[0], parts[1], zf.read(name)


def _read(source: Path, part: str, image_size: int) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    key = (str(source.resolve()), image_size)
    if key in _MEMO:
        return _MEMO[key]
    images, targets, classes, alphabets = [], [], [], []
    index: dict[tuple[str, str], int] = {}
    for alphabet, character, data in _drawings(source, part):
        if (alphabet, character) not in index:
            index[(alphabet, character)] = len(classes)
            classes.append(f"{alphabet}/{character}")
            alphabets.append(alphabet)
        img = Image.open(io.BytesIO(data)).convert("L")
        ink = Image.fromarray(255 - np.asarray(img, dtype=np.uint8))  # ink = 255
        images.append(np.asarray(ink.resize((image_size, image_size), Image.Resampling.BOX), dtype=np.uint8))
        targets.append(index[(alphabet, character)])
    if not images:
        raise FileNotFoundError(f"no drawings found in {source}: expected <alphabet>/<character>/<drawing>.png")
    _MEMO[key] = (np.stack(images), np.asarray(targets), classes, alphabets)
    return _MEMO[key]


class Omniglot(CharacterDataset):
    """Omniglot as a torch data set with the same splits and items as :class:`~mlcourse.data.FontGlot`.

    Args:
        root: Folder that holds ``images_background`` / ``images_evaluation`` (folders or zips).
        split: ``"background"``, ``"validation"`` (whole alphabets carved from background) or
            ``"evaluation"``.
        image_size: Side of the (square) images; 28 is the usual choice in few-shot papers.
        download: Fetch the official zips with torchvision first (needs a network).
        validation_fraction: Share of background classes held out for validation.
        seed: Seed of the validation carve.
        transform: Optional function applied to each ``(1, S, S)`` image tensor.
    """

    def __init__(self, root: str | os.PathLike, split: str = "background", image_size: int = 28,
                 download: bool = False, validation_fraction: float = 0.15, seed: int = 0,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        part = _PARTS[split]
        source = find_omniglot(root, part)
        if source is None and download:
            from torchvision.datasets import Omniglot as TorchvisionOmniglot

            TorchvisionOmniglot(str(root), background=part == "images_background", download=True)
            source = find_omniglot(root, part)
        if source is None:
            raise FileNotFoundError(
                f"Omniglot's {part} is not under {Path(root).expanduser()}: put the folder {part}/ or "
                f"{part}.zip there (from the official release), or pass download=True on a machine with a "
                "network. FontGlot (mlcourse.data.FontGlot) needs no download."
            )
        images, targets, classes, alphabets = _read(source, part, image_size)
        if split != "evaluation":
            sizes = {a: alphabets.count(a) for a in dict.fromkeys(alphabets)}
            val = carve_validation(sizes, validation_fraction, seed)
            keep_cls = [c for c, a in enumerate(alphabets) if (a in val) == (split == "validation")]
            remap = np.full(len(classes), -1)
            remap[keep_cls] = np.arange(len(keep_cls))
            mask = remap[targets] >= 0
            images, targets = images[mask], remap[targets[mask]]
            classes, alphabets = [classes[c] for c in keep_cls], [alphabets[c] for c in keep_cls]
        super().__init__(images, targets, classes, alphabets, transform)
        self.split = split
