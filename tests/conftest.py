import numpy as np
import pytest

from mlcourse.data import FontGlot


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """A cache folder holding the tiny FontGlot build (built once per test session)."""
    root = tmp_path_factory.mktemp("fontglot")
    FontGlot("background", preset="tiny", root=root, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_eval(tiny_root):
    return FontGlot("evaluation", preset="tiny", root=tiny_root, progress=False)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
