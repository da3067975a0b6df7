"""Data sets of the course: FontGlot (built offline) and Omniglot (when you have it)."""
from .base import CharacterDataset
from .course import course_data, dataset_name
from .fontglot import FontGlot, load_fontglot
from .omniglot import Omniglot
from .sinusoid import SinusoidTask, Sinusoids

__all__ = ["CharacterDataset", "course_data", "dataset_name", "FontGlot", "Omniglot", "SinusoidTask", "Sinusoids", "load_fontglot"]
