"""mlcourse: meta-learning and transfer learning, a course and a small reference implementation.

The package follows the course's map:

- ``mlcourse.data``: FontGlot, Omniglot, sinusoid tasks, font vs handwritten digits;
- ``mlcourse.episodes``: N-way K-shot episodes;
- ``mlcourse.learner``: the protocol every few-shot method implements;
- ``mlcourse.training``: the one training loop; ``mlcourse.evaluation``: the one evaluator
  and the paired comparison;
- ``mlcourse.metric`` (metric-based), ``mlcourse.blackbox`` (model-based),
  ``mlcourse.optimization`` (the MAML family), ``mlcourse.learned_optimizers``;
- ``mlcourse.transfer``: fine-tuning, distillation, domain adaptation;
- ``mlcourse.grading`` (its own extra, ``pip install "mlcourse[grading]"``).

The names that need PyTorch (``Episode``, ``EpisodeSampler``, ``get_device``,
``seed_everything``) are imported on first use, so that tools which never touch a tensor
(the grader, the command line) start without loading PyTorch.

Importing the package makes glibc keep the CPU memory PyTorch frees for reuse
(``mlcourse.memory``; ``MLCOURSE_KEEP_FREED_MEMORY=0`` leaves it alone).
"""
from __future__ import annotations

import importlib

from .config import is_quick, quick
from .memory import _apply_on_import

_apply_on_import()

__version__ = "0.2.0"
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
