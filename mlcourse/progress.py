"""Progress bars: ``from mlcourse.progress import tqdm`` everywhere in the package.

``MLCOURSE_PROGRESS`` chooses the kind, read once at import:

- ``auto`` (default): ``tqdm.auto``, a widget in Jupyter and text in a terminal;
- ``text``: always text;
- ``off``: no bars at all. The book's execution uses it (``tools/execute_book.py``): a saved
  widget would make every page load JavaScript from a CDN to draw a finished bar, and the book
  must read offline.
"""
from __future__ import annotations

import functools
import os

__all__ = ["tqdm", "mode"]

_MODES = ("auto", "text", "off")


def mode() -> str:
    """The progress-bar mode from ``MLCOURSE_PROGRESS`` (``auto``, ``text`` or ``off``)."""
    value = os.environ.get("MLCOURSE_PROGRESS", "auto").strip().lower() or "auto"
    if value not in _MODES:
        raise ValueError(f"MLCOURSE_PROGRESS={value!r}: use one of {', '.join(_MODES)}")
    return value


if mode() == "auto":
    from tqdm.auto import tqdm as _tqdm
else:
    from tqdm.std import tqdm as _tqdm

if mode() == "off":
    @functools.wraps(_tqdm)
    def tqdm(*args, **kwargs):
        kwargs["disable"] = True  # over the caller's own `disable=not progress`
        return _tqdm(*args, **kwargs)
else:
    tqdm = _tqdm
