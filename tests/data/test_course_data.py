"""The course's data switch: FontGlot by default, the real Omniglot with two environment variables."""
import pytest
import torch

from mlcourse.data import FontGlot, Omniglot, course_data, dataset_name
from mlcourse.data.course import with_rotations
from test_omniglot import _make_tree


@pytest.fixture
def omniglot_tree(tmp_path):
    _make_tree(tmp_path, "images_background", [f"Alpha{i}" for i in range(6)])
    _make_tree(tmp_path, "images_evaluation", ["Beta0", "Beta1"])
    return tmp_path


def test_default_is_fontglot(tiny_root, monkeypatch):
    monkeypatch.delenv("MLCOURSE_DATASET", raising=False)
    monkeypatch.setenv("MLCOURSE_DATA", str(tiny_root))
    data = course_data("evaluation", preset="tiny")
    assert dataset_name() == "fontglot" and isinstance(data, FontGlot) and data.split == "evaluation"


def test_switch_to_omniglot_reads_its_splits(omniglot_tree, monkeypatch):
    monkeypatch.setenv("MLCOURSE_DATASET", "omniglot")
    monkeypatch.setenv("MLCOURSE_OMNIGLOT", str(omniglot_tree))
    splits = {s: course_data(s) for s in ("background", "validation", "evaluation")}
    assert all(isinstance(d, Omniglot) for d in splits.values())
    assert splits["evaluation"].alphabets == ["Beta0", "Beta1"]
    assert set(splits["background"].alphabets).isdisjoint(splits["validation"].alphabets)
    monkeypatch.setenv("MLCOURSE_OMNIGLOT_ROTATIONS", "1")
    rotated = course_data("evaluation")
    assert rotated.n_classes == 4 * splits["evaluation"].n_classes and len(rotated) == 4 * len(splits["evaluation"])


def test_rotations_are_new_classes_of_rotated_images(omniglot_tree):
    data = Omniglot(omniglot_tree, "evaluation")
    rotated = with_rotations(data)
    x, y = rotated[len(data)]  # the first image, rotated by 90 degrees, in class n_classes
    assert y == data.n_classes and torch.equal(x[0], torch.rot90(data[0][0][0], 1))


def test_switch_errors_say_what_to_set(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCOURSE_DATASET", "omniglot")
    monkeypatch.delenv("MLCOURSE_OMNIGLOT", raising=False)
    with pytest.raises(ValueError, match="MLCOURSE_OMNIGLOT=DIR"):
        course_data("background")
    monkeypatch.setenv("MLCOURSE_OMNIGLOT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="images_background"):
        course_data("background")
    monkeypatch.setenv("MLCOURSE_DATASET", "mnist")
    with pytest.raises(ValueError, match="not a data set of the course"):
        course_data("background")
    monkeypatch.delenv("MLCOURSE_DATASET")
    with pytest.raises(ValueError, match="unknown split"):
        course_data("test")
