"""FontGlot: an Omniglot-like few-shot data set built offline from the fonts matplotlib ships.

Omniglot (Lake et al. 2015) has 1,623 characters from 50 alphabets, each drawn by 20
people. FontGlot imitates its structure with no download: *alphabets* are Unicode
scripts (large ones cut into chunks), *characters* are base letters that at least two
fonts draw, and the 20 *drawers* of a character are its fonts, each with a random
affine warp, stroke thickening and elastic noise.

How it is built (:func:`build_fontglot`):

1. Every base letter (no accents, no compatibility forms) of the chosen scripts that
   at least two fonts draw is rendered from its glyph outline in each of those fonts.
2. Renders that disagree with the character's typical render (some fonts draw another
   shape at that code point) are dropped; a character needs two agreeing renders.
3. Look-alikes are merged (A, Greek Alpha and Cyrillic A; o and O once size is
   normalised): characters whose mean renders overlap by ``merge_iou`` or more become one
   class, kept in the script that comes first (background scripts first), so a shape
   never sits on both sides of the split.
4. Scripts with fewer than ``min_alphabet`` characters are dropped; large ones are cut
   into alphabets of at most ``max_alphabet`` characters.
5. Background and evaluation are split by script; a validation split is carved from
   whole background alphabets.

FontGlot is easier than Omniglot (within-class variety comes mostly from augmentation:
many scripts exist in only a few font styles). Report results on both where you can.
The build is deterministic for a seed and cached (see :func:`fontglot_path`).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from ..progress import tqdm

from ..config import data_dir
from .base import SPLITS, CharacterDataset, carve_validation
from .glyphs import COURSE_FONTS, char_map, font_path, fonts_digest, render_glyph, script_of, usable_fonts

__all__ = ["FontGlot", "FontGlotSettings", "PRESETS", "build_fontglot", "load_fontglot", "fontglot_path"]

BUILDER_VERSION = 1
BACKGROUND_SCRIPTS = ("LATIN", "CANADIAN SYLLABICS", "HEBREW", "NKO", "OGHAM", "LISU", "COPTIC")
EVALUATION_SCRIPTS = ("CYRILLIC", "GREEK", "ARMENIAN", "GEORGIAN", "ARABIC", "TIFINAGH", "LAO", "OLD ITALIC")


@dataclass(frozen=True)
class FontGlotSettings:
    """Everything that decides the content of a FontGlot build (part of the cache key)."""

    fonts: tuple[str, ...] = ()  # font file names; empty = all of COURSE_FONTS
    background_scripts: tuple[str, ...] = BACKGROUND_SCRIPTS
    evaluation_scripts: tuple[str, ...] = EVALUATION_SCRIPTS
    max_per_script: int | None = None  # keep only the first characters of each script (tiny builds)
    drawers: int = 20
    image_size: int = 28
    min_fonts: int = 2
    agree_cos: float = 0.6
    merge_iou: float = 0.9
    min_alphabet: int = 14
    max_alphabet: int = 55
    validation_fraction: float = 0.15
    seed: int = 0


PRESETS: dict[str, FontGlotSettings] = {
    "full": FontGlotSettings(),
    # About a second to build: for tests and for trying things out.
    "tiny": FontGlotSettings(fonts=("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSans-Bold.ttf"),
                             background_scripts=("LATIN", "HEBREW"),
                             evaluation_scripts=("GREEK", "ARMENIAN"), max_per_script=24,
                             min_alphabet=10, max_alphabet=24, validation_fraction=0.3),
}

_RENDER = 2  # render at twice the final size, augment, then average 2x2 blocks


def _settings_key(settings: FontGlotSettings, fonts: list[Path]) -> str:
    payload = json.dumps({"v": BUILDER_VERSION, "settings": asdict(settings), "fonts": fonts_digest(fonts)},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _resolve_fonts(settings: FontGlotSettings) -> list[Path]:
    if not settings.fonts:
        return usable_fonts()
    unknown = [name for name in settings.fonts if name not in COURSE_FONTS]
    if unknown:
        raise ValueError(f"fonts {unknown} are not among the course's fonts; pick from {list(COURSE_FONTS)}")
    return [font_path(name) for name in settings.fonts]


def _render_chunk(job: tuple[list[tuple[int, list[str]]], int]) -> list[tuple[int, list[np.ndarray]]]:
    chars, size = job
    out = []
    for cp, fonts in chars:
        imgs = [render_glyph(f, cp, size=size) for f in fonts]
        out.append((cp, [(255 * im).astype(np.uint8) for im in imgs if im is not None]))
    return out


def augment(image: np.ndarray, rng: np.random.Generator, out_size: int) -> np.ndarray:
    """One "drawer": thicken strokes, warp (rotate, shear, scale, shift) and add elastic noise.

    Args:
        image: Ink coverage in [0, 1], shape ``(2 * out_size, 2 * out_size)``.
        rng: Source of randomness.
        out_size: Side of the returned image.

    Returns:
        ``uint8`` image, shape ``(out_size, out_size)``.
    """
    n = image.shape[0]
    thick = int(rng.choice([1, 2, 3, 4], p=[0.35, 0.3, 0.25, 0.1]))
    if thick > 1:
        image = ndimage.maximum_filter(image, size=thick)
    angle = np.deg2rad(rng.uniform(-12, 12))
    shear = rng.uniform(-0.25, 0.25)
    scale = rng.uniform(0.8, 1.05, size=2)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    forward = rot @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag(scale)
    inverse = np.linalg.inv(forward)
    centre = (n - 1) / 2
    shift = rng.uniform(-0.06, 0.06, size=2) * n
    grid = np.mgrid[0:n, 0:n].reshape(2, -1).astype(np.float64)  # (2, n*n) as (row, col)
    coords = inverse @ (grid - centre - shift[:, None]) + centre
    coarse = rng.normal(size=(2, 5, 5))
    field = np.stack([ndimage.zoom(c, n / 5, order=3)[:n, :n] for c in coarse]).reshape(2, -1)
    coords += rng.uniform(0.5, 2.0) * n / 56 * field
    warped = ndimage.map_coordinates(image, coords, order=1, mode="constant", cval=0.0).reshape(n, n)
    small = warped.reshape(out_size, n // out_size, out_size, n // out_size).mean(axis=(1, 3))
    return np.clip(small * 255 + 0.5, 0, 255).astype(np.uint8)


def _augment_class(job: tuple[int, list[np.ndarray], int, int, int]) -> np.ndarray:
    seed, renders, cp, drawers, size = job
    rng = np.random.default_rng([seed, cp])
    order = rng.permutation(len(renders))
    return np.stack([augment(renders[order[j % len(renders)]] / 255.0, rng, size) for j in range(drawers)])


def _descriptor(renders: np.ndarray) -> np.ndarray:
    """Blurred, unit-norm, half-resolution renders for comparing shapes, shape (F, D)."""
    f, n, _ = renders.shape
    small = renders.reshape(f, n // 2, 2, n // 2, 2).mean(axis=(2, 4)) / 255.0
    blurred = ndimage.gaussian_filter(small, sigma=(0, 1.0, 1.0)).reshape(f, -1)
    return blurred / np.maximum(np.linalg.norm(blurred, axis=1, keepdims=True), 1e-8)


def _agreeing(renders: list[np.ndarray], min_cos: float) -> list[np.ndarray]:
    """Drop renders whose shape disagrees with the medoid render of the character."""
    desc = _descriptor(np.stack(renders))
    sim = desc @ desc.T
    medoid = int(sim.mean(axis=1).argmax())
    return [r for r, s in zip(renders, sim[medoid]) if s >= min_cos]


def _chunks(names: list[int], max_size: int) -> list[list[int]]:
    k = math.ceil(len(names) / max_size)
    return [list(c) for c in np.array_split(np.asarray(names), k)]


def build_fontglot(settings: FontGlotSettings = PRESETS["full"], progress: bool = True,
                   processes: int | None = None) -> dict[str, np.ndarray]:
    """Build FontGlot from scratch (no cache); see the module docstring for the recipe.

    Returns:
        Arrays ``images`` ``uint8 (n_classes, drawers, S, S)``, ``codepoints`` ``(n_classes,)``,
        ``members`` (merged look-alikes, e.g. ``"U+0041 U+0391"``), ``alphabets`` and ``splits``
        (``"background"``, ``"validation"`` or ``"evaluation"``) per class, and ``meta`` (JSON).
    """
    fonts = _resolve_fonts(settings)
    scripts = list(settings.background_scripts) + list(settings.evaluation_scripts)
    if set(settings.background_scripts) & set(settings.evaluation_scripts):
        raise ValueError("a script cannot be both background and evaluation: "
                         f"{sorted(set(settings.background_scripts) & set(settings.evaluation_scripts))}")
    fonts_of: dict[int, list[str]] = defaultdict(list)
    for f in fonts:
        for cp in char_map(f):
            if script_of(cp) in scripts:
                fonts_of[cp].append(str(f))
    by_script: dict[str, list[int]] = defaultdict(list)
    for cp in sorted(fonts_of):
        if len(fonts_of[cp]) >= settings.min_fonts:
            by_script[script_of(cp)].append(cp)
    if settings.max_per_script:
        by_script = defaultdict(list, {s: cps[: settings.max_per_script] for s, cps in by_script.items()})
    cps = [cp for s in scripts for cp in by_script.get(s, [])]  # priority order
    n_proc = processes or (1 if len(cps) < 500 else min(2, os.cpu_count() or 1))
    jobs = [([(cp, fonts_of[cp]) for cp in cps[i:i + 64]], _RENDER * settings.image_size)
            for i in range(0, len(cps), 64)]
    renders: dict[int, list[np.ndarray]] = {}
    # fork (where there is one) spares each worker a fresh import of torch
    method = "fork" if "fork" in get_all_start_methods() else "spawn"
    with get_context(method).Pool(n_proc) if n_proc > 1 else _Serial() as pool:
        it = pool.imap(_render_chunk, jobs)
        for chunk in tqdm(it, total=len(jobs), desc="FontGlot: rendering glyphs", disable=not progress):
            renders.update(chunk)
        kept = {cp: r for cp in cps if len(r := _agreeing(renders[cp], settings.agree_cos) if renders[cp] else [])
                >= settings.min_fonts}
        order = [cp for cp in cps if cp in kept]
        # Merge look-alikes: binary mean renders at the final size, IoU >= merge_iou.
        protos = np.stack([np.stack(kept[cp]).mean(0) for cp in order])
        s = settings.image_size
        bits = protos.reshape(len(order), s, _RENDER, s, _RENDER).mean(axis=(2, 4)).reshape(len(order), -1) > 127
        bits_f = bits.astype(np.float32)
        inter = bits_f @ bits_f.T
        union = bits_f.sum(1)[:, None] + bits_f.sum(1)[None, :] - inter
        iou = inter / np.maximum(union, 1)
        owner: dict[int, int] = {}  # class index -> index of the class it merges into
        heads: list[int] = []
        for i in range(len(order)):
            match = next((h for h in heads if iou[i, h] >= settings.merge_iou), None)
            if match is None:
                heads.append(i)
                owner[i] = i
            else:
                owner[i] = match
        members: dict[int, list[int]] = defaultdict(list)
        for i, h in owner.items():
            members[h].append(i)
        # Alphabets: scripts with enough characters, large ones in chunks.
        classes: list[tuple[int, str, str]] = []  # (head index, alphabet, split)
        for script in scripts:
            heads_s = [h for h in heads if script_of(order[h]) == script]
            if len(heads_s) < settings.min_alphabet:
                continue
            split = "background" if script in settings.background_scripts else "evaluation"
            parts = _chunks(heads_s, settings.max_alphabet)
            for k, part in enumerate(parts):
                name = script.title() + (f" {k + 1}/{len(parts)}" if len(parts) > 1 else "")
                classes.extend((h, name, split) for h in part)
        sizes: dict[str, int] = defaultdict(int)
        for _, a, sp in classes:
            if sp == "background":
                sizes[a] += 1
        val = carve_validation(dict(sizes), settings.validation_fraction, settings.seed)
        classes = [(h, a, "validation" if a in val else sp) for h, a, sp in classes]
        aug_jobs = [(settings.seed, [r for m in members[h] for r in kept[order[m]]], order[h],
                     settings.drawers, s) for h, _, _ in classes]
        images = np.stack(list(tqdm(pool.imap(_augment_class, aug_jobs, chunksize=16), total=len(aug_jobs),
                                    desc="FontGlot: drawing", disable=not progress)))
    meta = {"builder_version": BUILDER_VERSION, "settings": asdict(settings),
            "fonts": [f.name for f in fonts]}
    return {
        "images": images,
        "codepoints": np.array([order[h] for h, _, _ in classes], dtype=np.int64),
        "members": np.array([" ".join(f"U+{order[m]:04X}" for m in members[h]) for h, _, _ in classes]),
        "alphabets": np.array([a for _, a, _ in classes]),
        "splits": np.array([sp for _, _, sp in classes]),
        "meta": np.array(json.dumps(meta)),
    }


class _Serial:
    """A stand-in for a process pool that maps in this process."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    imap = staticmethod(lambda fn, it, chunksize=1: map(fn, it))


def fontglot_path(preset: str = "full", seed: int = 0, root: str | os.PathLike | None = None) -> Path:
    """Cache file of a build: ``<root>/fontglot-<preset>-<key>.npz``.

    The key hashes the builder version, its settings and the bytes of every font used, so
    a change of fonts (a new matplotlib) or of settings gives a new file.
    """
    settings = _preset(preset, seed)
    folder = Path(root).expanduser() if root else data_dir()
    return folder / f"fontglot-{preset}-{_settings_key(settings, _resolve_fonts(settings))}.npz"


def _preset(preset: str, seed: int) -> FontGlotSettings:
    if preset not in PRESETS:
        raise ValueError(f"unknown FontGlot preset {preset!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[preset], seed=int(seed))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_REQUIRED = ("images", "codepoints", "members", "alphabets", "splits", "meta")
_MEMO: dict[str, dict[str, np.ndarray]] = {}


def _read_verified(path: Path) -> dict[str, np.ndarray] | None:
    """Arrays of a cache file if it is intact, else ``None`` (with a warning saying why)."""
    checksum = path.with_suffix(".sha256")
    try:
        if checksum.read_text().strip() != _sha256(path):
            raise ValueError("checksum mismatch")
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in _REQUIRED}
        if json.loads(str(arrays["meta"])).get("builder_version") != BUILDER_VERSION:
            raise ValueError("built by another version of the builder")
        return arrays
    except (OSError, ValueError, KeyError, EOFError) as err:
        warnings.warn(f"FontGlot cache {path} is unusable ({err}); rebuilding it", stacklevel=3)
        return None


def load_fontglot(preset: str = "full", seed: int = 0, root: str | os.PathLike | None = None,
                  progress: bool = True) -> dict[str, np.ndarray]:
    """The arrays of a FontGlot build, from the cache when intact, else built and cached.

    Args:
        preset: ``"full"`` (about 1,500 classes) or ``"tiny"`` (about a second to build).
        seed: Seed of the augmentation and of the validation split.
        root: Folder of the cache (default ``$MLCOURSE_DATA`` or ``~/.cache/mlcourse``).
        progress: Show progress bars while building.
    """
    path = fontglot_path(preset, seed, root)
    if str(path) in _MEMO:
        return _MEMO[str(path)]
    arrays = _read_verified(path) if path.exists() else None
    if arrays is None:
        arrays = build_fontglot(_preset(preset, seed), progress=progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        path.with_suffix(".sha256").write_text(_sha256(tmp))
        os.replace(tmp, path)
    _MEMO[str(path)] = arrays
    return arrays


class FontGlot(CharacterDataset):
    """FontGlot as a torch data set: ``(image (1, S, S) in [0, 1], label)`` items.

    Args:
        split: ``"background"`` (meta-training), ``"validation"`` (model selection, alphabets
            carved from background) or ``"evaluation"`` (meta-testing; other scripts).
        preset: ``"full"`` or ``"tiny"``.
        seed: Seed of the build.
        root: Cache folder (default ``$MLCOURSE_DATA`` or ``~/.cache/mlcourse``).
        transform: Optional function applied to each image tensor.
        progress: Show progress bars if the data set has to be built.
    """

    def __init__(self, split: str = "background", preset: str = "full", seed: int = 0,
                 root: str | os.PathLike | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None, progress: bool = True) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        arrays = load_fontglot(preset, seed, root, progress)
        keep = np.flatnonzero(arrays["splits"] == split)
        images = arrays["images"][keep]  # (C, drawers, S, S)
        c, d, s, _ = images.shape
        names = [chr(int(cp)) + f" (U+{int(cp):04X})" for cp in arrays["codepoints"][keep]]
        super().__init__(images.reshape(c * d, s, s), np.repeat(np.arange(c), d), names,
                         arrays["alphabets"][keep].tolist(), transform)
        self.split = split
        self.codepoints = arrays["codepoints"][keep]
