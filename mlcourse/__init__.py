"""mlcourse: meta-learning and transfer learning, a course and a small reference implementation.

Modules follow the course's map: ``mlcourse.data`` (FontGlot, Omniglot),
``mlcourse.episodes`` (N-way K-shot tasks), ``mlcourse.evaluation`` (accuracy with
confidence intervals), ``mlcourse.baselines``, ``mlcourse.device``.
"""
from .config import is_quick, quick
from .device import get_device, seed_everything
from .episodes import Episode, EpisodeSampler

__version__ = "0.1.0"
__all__ = ["Episode", "EpisodeSampler", "get_device", "seed_everything", "is_quick", "quick", "__version__"]
