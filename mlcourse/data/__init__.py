"""Data sets of the course: FontGlot (built offline) and Omniglot (when you have it)."""
from .base import CharacterDataset
from .fontglot import FontGlot, load_fontglot
from .omniglot import Omniglot

__all__ = ["CharacterDataset", "FontGlot", "Omniglot", "load_fontglot"]
