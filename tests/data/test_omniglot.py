import zipfile

import numpy as np
import pytest
from PIL import Image

from mlcourse.data import Omniglot


def _make_tree(root, part, alphabets, n_chars=3, n_drawers=20):
    rng = np.random.default_rng(0)
    for a in alphabets:
        for c in range(1, n_chars + 1):
            folder = root / part / a / f"character{c:02d}"
            folder.mkdir(parents=True)
            for d in range(n_drawers):
                img = np.full((105, 105), 255, dtype=np.uint8)  # white paper
                img[rng.integers(0, 90):, 40:50] = 0  # a black stroke
                Image.fromarray(img).convert("1").save(folder / f"{c:04d}_{d + 1:02d}.png")


@pytest.fixture
def omniglot_root(tmp_path):
    _make_tree(tmp_path, "images_background", [f"Alpha{i}" for i in range(6)])
    _make_tree(tmp_path, "images_evaluation", ["Beta0", "Beta1"])
    return tmp_path


def test_reads_folders_with_fontglot_interface(omniglot_root):
    ev = Omniglot(omniglot_root, "evaluation")
    assert ev.n_classes == 6 and len(ev) == 120 and ev.alphabets == ["Beta0", "Beta1"]
    x, y = ev[0]
    assert x.shape == (1, 28, 28) and y == 0
    assert float(x.max()) == 1.0 and float(x.mean()) < 0.5  # ink is 1 on a 0 background


def test_validation_is_carved_from_whole_background_alphabets(omniglot_root):
    bg = Omniglot(omniglot_root, "background")
    val = Omniglot(omniglot_root, "validation")
    assert set(bg.alphabets).isdisjoint(val.alphabets)
    assert bg.n_classes + val.n_classes == 18
    assert sorted(set(bg.targets.tolist())) == list(range(bg.n_classes))


def test_reads_zips(omniglot_root, tmp_path_factory):
    zroot = tmp_path_factory.mktemp("zips")
    with zipfile.ZipFile(zroot / "images_evaluation.zip", "w") as zf:
        for png in sorted((omniglot_root / "images_evaluation").rglob("*.png")):
            zf.write(png, png.relative_to(omniglot_root))
    from_zip = Omniglot(zroot, "evaluation", image_size=20)
    from_dir = Omniglot(omniglot_root, "evaluation", image_size=20)
    assert from_zip.images.shape == (120, 20, 20)
    assert np.array_equal(from_zip.images.numpy(), from_dir.images.numpy())


def test_missing_files_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        Omniglot(tmp_path, "background")
