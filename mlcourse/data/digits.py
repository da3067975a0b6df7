"""Two domains of the same ten digits: font-rendered (built offline) and handwritten.

The *target* domain is the handwritten digits that scikit-learn ships (``load_digits``: 1,797
images of 8x8 values 0..16, from the UCI "optdigits" set). Each was made from a 32x32 binary
bitmap of a scanned digit by counting the ink pixels in every 4x4 block.

The *source* domain is digits rendered from the fonts matplotlib ships and converted the same
way: warp each render (thickness, rotation, shear, elastic noise, as in FontGlot), binarise,
scale the digit so its longer side spans 32 pixels, centre it, count ink in 4x4 blocks. Same
format, same classes, a different look: clean typography against people's handwriting. A
classifier trained on the fonts loses a lot on the handwriting; that gap is the subject of
domain adaptation (:mod:`mlcourse.transfer.domain`).
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from ..config import data_dir
from .fontglot import augment
from .glyphs import char_map, fonts_digest, render_glyph, usable_fonts

__all__ = ["font_digits", "handwritten_digits", "to_optdigits", "upsample"]

_VERSION = 1


def to_optdigits(image: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Convert an ink image to the 8x8 "optdigits" format of scikit-learn's digits.

    Args:
        image: Ink coverage, any square or rectangular shape, values in [0, 1] or 0..255.
        threshold: Binarisation threshold as a fraction of the maximum value.

    Returns:
        ``float32`` array of shape ``(8, 8)`` with integer values 0..16.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"expected one 2-D image, got shape {image.shape}")
    peak = float(image.max())
    if peak <= 0:
        raise ValueError("the image has no ink: nothing to convert")
    ink = image >= threshold * peak
    rows, cols = np.nonzero(ink)
    crop = ink[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]
    h, w = crop.shape
    scale = 32.0 / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = np.asarray(Image.fromarray(crop.astype(np.uint8) * 255).resize((nw, nh), Image.Resampling.BILINEAR))
    canvas = np.zeros((32, 32), dtype=bool)
    top, left = (32 - nh) // 2, (32 - nw) // 2
    canvas[top: top + nh, left: left + nw] = resized >= 128
    return canvas.reshape(8, 4, 8, 4).sum(axis=(1, 3)).astype(np.float32)


def _render_font(job: tuple[str, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    font, per_font, seed, index = job
    rng = np.random.default_rng([seed, index])
    xs, ys = [], []
    for digit in range(10):
        base = render_glyph(font, ord(str(digit)), size=64, fill=0.7)
        for _ in range(per_font):
            warped = augment(base, rng, 32).astype(np.float32) / 255.0
            xs.append(to_optdigits(warped))
            ys.append(digit)
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def _digit_fonts() -> list[Path]:
    return [f for f in usable_fonts() if all(ord(str(d)) in char_map(f) for d in range(10))]


def font_digits(n_per_class: int = 300, seed: int = 0, cache: bool = True, workers: int = 2
                ) -> tuple[np.ndarray, np.ndarray]:
    """Font-rendered digits in scikit-learn's 8x8 format: the labelled source domain.

    Args:
        n_per_class: Images per digit, spread evenly over the fonts that have all ten digits
            (21 of the course's fonts, ``COURSE_FONTS`` of :mod:`mlcourse.data.glyphs`); must be at least
            the number of fonts.
        seed: Seed of the augmentation.
        cache: Keep the result in ``data_dir()`` (about 1 s to build 1,000 images).
        workers: Processes used to render.

    Returns:
        ``X`` of shape ``(10 * n, 64)`` with values 0..16 (like ``load_digits().data``) and
        ``y`` of shape ``(10 * n,)``, ordered by font, then digit.
    """
    fonts = _digit_fonts()
    if n_per_class < len(fonts):
        raise ValueError(f"n_per_class must be at least the number of fonts ({len(fonts)}), got {n_per_class}")
    per_font = [n_per_class // len(fonts) + (i < n_per_class % len(fonts)) for i in range(len(fonts))]
    key = fonts_digest(fonts)[:12]
    path = data_dir() / f"font_digits_v{_VERSION}_{n_per_class}_{seed}_{key}.npz"
    if cache and path.exists():
        with np.load(path) as z:
            return z["X"], z["y"]
    jobs = [(str(f), k, seed, i) for i, (f, k) in enumerate(zip(fonts, per_font))]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_render_font, jobs))
    else:
        parts = [_render_font(j) for j in jobs]
    X = np.concatenate([p[0] for p in parts]).reshape(-1, 64)
    y = np.concatenate([p[1] for p in parts])
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, X=X, y=y)
        tmp.replace(path)
    return X, y


def handwritten_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's handwritten digits (the target domain): ``X`` ``(1797, 64)`` in 0..16, ``y``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data.astype(np.float32), d.target.astype(np.int64)


def upsample(X: np.ndarray, size: int = 28) -> np.ndarray:
    """8x8 digits (``(N, 64)``, 0..16) to ``uint8`` images ``(N, size, size)`` with ink = 255.

    Smooth (cubic) interpolation: the blocky, blurred look of low-resolution scans, a
    different domain from sharp rendered glyphs.
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != 64:
        raise ValueError(f"expected 8x8 digits of shape (N, 64), got {X.shape}")
    imgs = X.reshape(-1, 8, 8) / 16.0
    pad = np.pad(imgs, ((0, 0), (1, 1), (1, 1)))  # a blank margin, like the glyphs
    big = ndimage.zoom(pad, (1, size / 10, size / 10), order=3)[:, :size, :size]
    return (np.clip(big, 0, 1) * 255 + 0.5).astype(np.uint8)
