"""Classify your own images with any trained learner: a support set from a folder, then queries.

The support set is a folder with one sub-folder per class, each holding that class's example
images (PNG, JPEG, ... anything Pillow reads)::

    my_support/
        alpha/  a1.png  a2.png
        beta/   b1.png  b2.png
        gamma/  g1.jpg  g2.jpg

Every image is read as the course's data is drawn: grey, 28x28, a light glyph on a dark
background (a picture of dark ink on light paper is inverted), the intensities in [0, 1].

Example:
    >>> support = load_support_folder("my_support")
    >>> learner = load_learner("protonet-1shot", 0)
    >>> predict_images(learner, support, [load_image("query.png")])
    [Prediction(label='beta', probabilities={'alpha': 0.01, 'beta': 0.97, 'gamma': 0.02})]

From the command line: ``mlcourse predict --support my_support query.png [more.png ...]``.

The probabilities are the softmax of the learner's own scores (ProtoNet's negative squared
distances, a Matching network's log-attention, a fitted head's logits ...). Nothing calibrates
them, and how sharp they are differs from learner to learner (SimpleShot's distances between unit
vectors and Baseline++'s scaled cosines give flat ones): compare the ranking of the classes, not
the numbers across learners (:mod:`mlcourse.calibration` fits a temperature on held-out episodes).
Files in a class folder that are not named as images (``.png``, ``.jpg`` ...) are skipped.

A learner trained at a fixed number of ways (the MAML family's head, the black boxes) needs a
support set of that many classes; the metric learners take any number. The MAML family
normalises with the statistics of the current batch (as in the reference code); here each
query is normalised in a batch with the support images only (``queries="with_support"``), so
no query's answer depends on the other queries given with it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .episodes import Episode

__all__ = ["SupportSet", "Prediction", "load_image", "load_support_folder", "predict_images", "IMAGE_SIZE"]

IMAGE_SIZE = 28
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


@dataclass
class SupportSet:
    """Labelled examples: ``images`` ``(n_classes * k_shot, 1, 28, 28)`` grouped by class, ``labels`` ``0..n-1``."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    files: list[Path]

    @property
    def k_shot(self) -> int:
        return len(self.labels) // len(self.classes)


@dataclass
class Prediction:
    """The predicted class name of one query and the learner's probability for every class."""

    label: str
    probabilities: dict[str, float]


def load_image(path: str | Path, size: int = IMAGE_SIZE) -> torch.Tensor:
    """One image as the course draws its data: ``(1, size, size)`` floats in [0, 1], light glyph on dark.

    The image is made grey, padded to a square with its own background, resized, and inverted
    when its border is lighter than its middle (dark ink on light paper).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image at {path}")
    try:
        with Image.open(path) as img:
            grey = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read {path} as an image ({err}); give a PNG, JPEG or another format Pillow reads") \
            from None
    if grey.size == 0:
        raise ValueError(f"{path} is an empty image")
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if border.mean() > 0.5:  # a light background: invert, so the glyph is light on dark as in FontGlot
        grey, border = 1.0 - grey, 1.0 - border
    h, w = grey.shape
    side = max(h, w)
    square = np.full((side, side), float(np.median(border)), dtype=np.float32)
    square[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = grey
    resample = Image.BOX if side >= size else Image.BILINEAR  # shrinking averages areas: no aliasing
    resized = Image.fromarray((square * 255).round().astype(np.uint8)).resize((size, size), resample)
    return torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0)[None]


def load_support_folder(folder: str | Path, *, k_shot: int | None = None, size: int = IMAGE_SIZE) -> SupportSet:
    """The support set in ``folder``: one sub-folder per class (sorted by name), its images as examples.

    Args:
        folder: The folder of class sub-folders.
        k_shot: Examples used per class (the first ones by file name); default: as many as the
            smallest class has, so that every class has the same number.
        size: Side of the square images.

    Raises:
        ValueError: Fewer than two classes, a class without images, a class with fewer than
            ``k_shot`` images, or a file that is not an image; the message names it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"the support folder {folder} does not exist")
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise ValueError(f"{folder} holds {len(class_dirs)} class folder(s); put each class's images in its own "
                         "sub-folder, at least two classes (e.g. support/alpha/*.png, support/beta/*.png)")
    files = {d.name: sorted(f for f in d.iterdir() if f.is_file() and not f.name.startswith(".")
                            and f.suffix.lower() in IMAGE_SUFFIXES) for d in class_dirs}
    empty = [name for name, fs in files.items() if not fs]
    if empty:
        raise ValueError(f"the class folder(s) {', '.join(repr(e) for e in empty)} in {folder} hold no images; "
                         "give every class at least one example")
    fewest = min(len(fs) for fs in files.values())
    if k_shot is None:
        k_shot = fewest
    if isinstance(k_shot, bool) or not isinstance(k_shot, int) or k_shot < 1:
        raise ValueError(f"k_shot must be a positive int, got {k_shot!r}")
    short = {name: len(fs) for name, fs in files.items() if len(fs) < k_shot}
    if short:
        raise ValueError(f"{k_shot} shots per class asked for, but " +
                         ", ".join(f"{name!r} has {n}" for name, n in short.items()) +
                         "; add images or ask for fewer shots")
    loaded = {name: [load_image(f, size) for f in fs] for name, fs in files.items()}  # every file must be an image
    used = [f for name in files for f in files[name][:k_shot]]
    images = torch.stack([img for name in files for img in loaded[name][:k_shot]])
    labels = torch.arange(len(files)).repeat_interleave(k_shot)
    return SupportSet(images, labels, list(files), used)


def _n_way_of(learner: nn.Module) -> int | None:
    """The number of classes a learner is built for, or None if it takes any number."""
    n_way = getattr(learner, "n_way", None)
    if isinstance(n_way, int):
        return n_way
    model = getattr(learner, "model", None)
    last = list(model.modules())[-1] if isinstance(model, nn.Module) else None
    return last.out_features if isinstance(last, nn.Linear) else None


@torch.no_grad()
def predict_images(learner: nn.Module, support: SupportSet, queries: Sequence[torch.Tensor] | torch.Tensor,
                   **predict_options) -> list[Prediction]:
    """The class of each query image, from the support set alone, with ``learner``'s probabilities.

    Args:
        learner: A trained learner (e.g. :func:`~mlcourse.experiments.records.load_learner`).
        support: From :func:`load_support_folder`.
        queries: Images ``(1, 28, 28)`` (e.g. from :func:`load_image`), or a tensor ``(Q, 1, 28, 28)``.
        **predict_options: Passed to the MAML family (e.g. ``inner_steps=10``) or to a learner's
            ``predict``; the metric learners and the black boxes take none.
    """
    from .learner import check_learner

    check_learner(learner)
    n_way = len(support.classes)
    needed = _n_way_of(learner)
    if needed is not None and needed != n_way:
        raise ValueError(f"this learner is built for {needed}-way tasks and the support set has {n_way} classes; "
                         f"give it {needed} class folders, or use a metric learner (any number of classes)")
    x = torch.stack(list(queries)) if not isinstance(queries, torch.Tensor) else queries
    if x.dim() != 4 or tuple(x.shape[1:]) != tuple(support.images.shape[1:]):
        raise ValueError(f"queries must be images of shape {tuple(support.images.shape[1:])}, got {tuple(x.shape)}")
    if len(x) == 0:
        raise ValueError("no query images to classify")
    device = next(learner.parameters()).device
    episode = Episode(support.images, support.labels, x, torch.zeros(len(x), dtype=torch.long),
                      torch.arange(n_way)).to(device)
    learner.eval()
    scores = _query_scores(learner, episode, **predict_options)
    probs = torch.softmax(scores.float(), dim=1).cpu()
    return [Prediction(support.classes[int(p.argmax())], {c: round(float(v), 4) for c, v in zip(support.classes, p)})
            for p in probs]


def _query_scores(learner: nn.Module, episode: Episode, **predict_options) -> torch.Tensor:
    """Scores ``(Q, n_way)`` of the queries (logits, log-probabilities or negative distances)."""
    if callable(getattr(learner, "adapted_output", None)):  # the MAML family: inductive, query by query
        return learner.adapted_output(episode, **{"queries": "with_support", **predict_options})
    if predict_options and not callable(getattr(learner, "adapted_output", None)):
        raise ValueError(f"{type(learner).__name__} takes no prediction options, got {sorted(predict_options)}")
    if callable(getattr(learner, "forward_task", None)):  # the black boxes
        return learner.forward_task(episode)
    if callable(getattr(learner, "scores", None)):  # metric learners
        return learner(episode.support_x, episode.support_y, episode.query_x)
    pred = learner.predict(episode)  # a learner that only names a label
    return torch.nn.functional.one_hot(pred, len(episode.classes)).float().log()
