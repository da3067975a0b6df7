"""mlcourse: meta-learning and transfer learning, a course and a small reference implementation.

Modules follow the course's map: ``mlcourse.data`` (FontGlot, Omniglot),
``mlcourse.episodes`` (N-way K-shot tasks), ``mlcourse.evaluation`` (accuracy with
confidence intervals), ``mlcourse.baselines``, ``mlcourse.device``.

The names that need PyTorch (``Episode``, ``EpisodeSampler``, ``get_device``,
``seed_everything``) are imported on first use, so that tools which never touch a tensor
(the grader, the command line) start without loading PyTorch.
"""
from __future__ import annotations

import importlib

from .config import is_quick, quick

__version__ = "0.1.0"
__all__ = ["Episode", "EpisodeSampler", "get_device", "seed_everything", "is_quick", "quick", "__version__"]

_LAZY = {"Episode": ".episodes", "EpisodeSampler": ".episodes", "get_device": ".device",
         "seed_everything": ".device"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mlcourse' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
