"""Run-time settings read from the environment.

``MLCOURSE_QUICK=1`` (set by ``make test``) asks notebooks for a quick run: every
cell still executes, with fewer episodes and training steps.
``MLCOURSE_DATA`` overrides where generated data sets are cached.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

__all__ = ["is_quick", "quick", "data_dir"]

T = TypeVar("T")


def is_quick() -> bool:
    """True when ``MLCOURSE_QUICK`` is set to a true value (``1``, ``true``, ``yes``)."""
    return os.environ.get("MLCOURSE_QUICK", "").strip().lower() in {"1", "true", "yes", "on"}


def quick(full: T, quick_value: T) -> T:
    """Return ``quick_value`` in quick mode, ``full`` otherwise.

    Example:
        >>> n_episodes = quick(600, 20)
    """
    return quick_value if is_quick() else full


def data_dir() -> Path:
    """Folder where generated data sets are cached (``$MLCOURSE_DATA`` or ``~/.cache/mlcourse``)."""
    root = os.environ.get("MLCOURSE_DATA")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "mlcourse"
