"""Rendering font glyphs to small grey-scale images, offline, from the fonts matplotlib ships.

Glyph outlines are read with fontTools and rasterised with Pillow, so characters can be
looked up by Unicode code point even in fonts whose character map is not Unicode (the
Computer Modern ``cm*10`` fonts use TeX encodings: their glyphs are mapped through their
Adobe glyph names).
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import unicodedata
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
from fontTools import agl
from fontTools.pens.basePen import BasePen
from fontTools.ttLib import TTFont
from PIL import Image, ImageChops, ImageDraw

logging.getLogger("fontTools").setLevel(logging.ERROR)  # old fonts carry odd timestamps

__all__ = ["COURSE_FONTS", "font_dir", "font_path", "usable_fonts", "char_map", "render_glyph", "script_of", "fonts_digest"]

# The fonts the course's data sets (FontGlot, the font digits) are built from, by file name, in
# the order the builds use them. matplotlib 3.9 and 3.10 ship 21 of them, the same files as 3.11; cmti10
# (Computer Modern Text Italic) arrived in matplotlib 3.11, so mlcourse carries a copy
# (mlcourse/data/fonts, BaKoMa licence) and the builds are the same on any matplotlib.
# matplotlib's other fonts are left out: placeholder boxes (LastResort), private-use glyphs
# (STIXNonUni), size variants (STIXSiz, cmex10), symbols (cmsy10) and display cuts of DejaVu.
COURSE_FONTS = (
    "DejaVuSans-Bold.ttf", "DejaVuSans-BoldOblique.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans.ttf",
    "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-BoldOblique.ttf", "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-BoldItalic.ttf", "DejaVuSerif-Italic.ttf",
    "DejaVuSerif.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralBolIta.ttf",
    "STIXGeneralItalic.ttf", "cmb10.ttf", "cmmi10.ttf", "cmr10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf",
)
# fonts_digest(usable_fonts()) of the fonts the shipped results (mlcourse/results) were measured on
COURSE_FONTS_DIGEST = "7da792ec396ad7846d0c847490a35da3668584d10c21746d27210ec2c20fbc6d"
_OWN_FONTS = Path(__file__).parent / "fonts"


def font_dir() -> Path:
    """The folder of TrueType fonts inside the installed matplotlib."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def font_path(name: str) -> Path:
    """The file of font ``name``: matplotlib's copy, else the one mlcourse carries; a clear error otherwise."""
    for folder in (font_dir(), _OWN_FONTS):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"font {name!r} is neither in matplotlib's fonts ({font_dir()}) nor in {_OWN_FONTS}; "
                            f"the course's fonts are {list(COURSE_FONTS)}")


@lru_cache(maxsize=1)
def usable_fonts() -> list[Path]:
    """The course's fonts (``COURSE_FONTS``), in order; warns if their bytes are not the reference ones.

    A different matplotlib could ship changed font files: the data sets built from them are then
    different data, and the shipped results will not reproduce exactly on them.
    """
    fonts = [font_path(name) for name in COURSE_FONTS]
    digest = fonts_digest(fonts)
    if digest != COURSE_FONTS_DIGEST:
        warnings.warn(f"the fonts of this matplotlib differ from the ones the course's data sets were built from "
                      f"(digest {digest[:12]}, reference {COURSE_FONTS_DIGEST[:12]}): FontGlot and the font digits "
                      f"built here are other data, and the shipped results will not reproduce exactly on them",
                      stacklevel=2)
    return list(fonts)


def fonts_digest(fonts: list[Path]) -> str:
    """SHA-256 over the names and bytes of ``fonts``: a key that changes when any font changes."""
    h = hashlib.sha256()
    for f in fonts:
        h.update(f.name.encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


@lru_cache(maxsize=64)
def _font(path: str) -> TTFont:
    # Read the whole file: a lazily read font keeps its file open, and forked build workers
    # would share (and race on) that file's offset.
    return TTFont(io.BytesIO(Path(path).read_bytes()), lazy=True)


@lru_cache(maxsize=64)
def char_map(path: str | os.PathLike) -> dict[int, str]:
    """Map Unicode code point -> glyph name for a font.

    Uses the font's Unicode character map; for the Computer Modern fonts (TeX encodings),
    glyph names are translated to code points with the Adobe Glyph List.
    """
    font = _font(str(path))
    if Path(path).name.startswith("cm"):
        out: dict[int, str] = {}
        for name in font.getGlyphOrder():
            text = agl.toUnicode(name)
            if len(text) == 1:
                out.setdefault(ord(text), name)
        return out
    return dict(font.getBestCmap() or {})


_T = np.linspace(0, 1, 9)[1:, None]  # 8 line segments per curve
_CUBIC = np.hstack([(1 - _T) ** 3, 3 * (1 - _T) ** 2 * _T, 3 * (1 - _T) * _T**2, _T**3])  # (8, 4)
_QUAD = np.hstack([(1 - _T) ** 2, 2 * (1 - _T) * _T, _T**2])  # (8, 3)


@lru_cache(maxsize=64)
def _glyph_set(path: str):
    return _font(path).getGlyphSet()


class _PolygonPen(BasePen):
    """Collects glyph contours as lists of points, flattening curves into line segments."""

    def __init__(self, glyph_set) -> None:
        super().__init__(glyph_set)
        self.contours: list[list[tuple[float, float]]] = []

    def _moveTo(self, pt):
        self.contours.append([pt])

    def _lineTo(self, pt):
        self.contours[-1].append(pt)

    def _curveToOne(self, p1, p2, p3):
        self.contours[-1].extend(map(tuple, _CUBIC @ np.array([self.contours[-1][-1], p1, p2, p3])))

    def _qCurveToOne(self, p1, p2):
        self.contours[-1].extend(map(tuple, _QUAD @ np.array([self.contours[-1][-1], p1, p2])))

    def _closePath(self):
        pass

    _endPath = _closePath


def render_glyph(path: str | os.PathLike, codepoint: int, size: int = 56, fill: float = 0.8,
                 supersample: int = 4) -> np.ndarray | None:
    """Render one character, scaled so its longer side fills ``fill * size`` pixels, centred.

    Args:
        path: A TrueType font file.
        codepoint: Unicode code point of the character.
        size: Side of the square output image in pixels.
        fill: Fraction of the image the glyph's longer side spans.
        supersample: Rasterise at this multiple of ``size`` and average down (anti-aliasing).

    Returns:
        Ink coverage in [0, 1], shape ``(size, size)``, float32; ``None`` when the font has no
        such character or its glyph is empty.
    """
    name = char_map(path).get(codepoint)
    if name is None:
        return None
    glyph_set = _glyph_set(str(path))
    pen = _PolygonPen(glyph_set)
    glyph_set[name].draw(pen)
    contours = [np.asarray(c, dtype=np.float64) for c in pen.contours if len(c) >= 3]
    if not contours:
        return None
    pts = np.concatenate(contours)
    lo, hi = pts.min(0), pts.max(0)
    extent = float((hi - lo).max())
    if extent <= 0:
        return None
    big = size * supersample
    scale = fill * big / extent
    centre = (lo + hi) / 2
    acc = Image.new("1", (big, big), 0)
    for c in contours:
        xy = (c - centre) * scale
        xy[:, 1] = -xy[:, 1]  # font units point up, image rows point down
        xy += big / 2
        img = Image.new("1", (big, big), 0)
        ImageDraw.Draw(img).polygon(list(map(tuple, xy)), fill=1)
        acc = ImageChops.logical_xor(acc, img)  # even-odd rule: holes are contours inside contours
    small = acc.convert("L").resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def script_of(codepoint: int) -> str | None:
    """The script of a base letter (``"LATIN"``, ``"CANADIAN SYLLABICS"``, ...), or ``None``.

    Returns ``None`` for anything that is not a letter, for letters that decompose
    (accented or compatibility forms: they repeat a base letter) and for unnamed code points.
    """
    ch = chr(codepoint)
    if not unicodedata.category(ch).startswith("L") or unicodedata.decomposition(ch):
        return None
    words = unicodedata.name(ch, "").split()
    if not words:
        return None
    return " ".join(words[:2]) if words[0] in ("OLD", "CANADIAN") else words[0]
