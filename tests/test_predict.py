"""Classify your own images: a support folder, query images, any trained learner, clear errors."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from mlcourse.backbones import Conv4
from mlcourse.cli import main
from mlcourse.data import FontGlot
from mlcourse.metric import PrototypicalNetwork
from mlcourse.optimization import MAML
from mlcourse.experiments.specs import conv4_classifier
from mlcourse.predict import load_image, load_support_folder, predict_images


def _save(path, array, ink_on_paper=False):
    """Save a FontGlot glyph (light on dark) as a PNG, as a user's scan would be (dark on light) if asked."""
    a = np.asarray(array, dtype=np.float32)
    a = 1.0 - a if ink_on_paper else a
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((a * 255).astype(np.uint8)).resize((56, 56), Image.NEAREST).save(path)


@pytest.fixture
def folder(tmp_path, tiny_eval):
    """A support folder of three FontGlot classes, 2 images each, plus one held-out query per class."""
    images = tiny_eval.images.float().numpy() / 255
    queries = []
    for name, c in zip(["alpha", "beta", "gamma"], [0, 1, 2]):
        idx = np.flatnonzero(tiny_eval.targets == c)
        for i in idx[:2]:
            _save(tmp_path / "support" / name / f"{i}.png", images[i], ink_on_paper=True)
        _save(tmp_path / "queries" / f"{name}.png", images[idx[2]], ink_on_paper=True)
        queries.append(tmp_path / "queries" / f"{name}.png")
    return tmp_path / "support", queries, images


def test_an_image_is_read_as_the_course_draws_its_data(tmp_path, tiny_eval):
    glyph = tiny_eval.images[0].float().numpy() / 255
    _save(tmp_path / "paper.png", glyph, ink_on_paper=True)
    _save(tmp_path / "screen.png", glyph)
    paper, screen = load_image(tmp_path / "paper.png"), load_image(tmp_path / "screen.png")
    assert paper.shape == (1, 28, 28) and 0 <= float(paper.min()) and float(paper.max()) <= 1
    torch.testing.assert_close(paper, screen, atol=2 / 255, rtol=0)  # dark ink on paper is inverted
    np.testing.assert_allclose(paper[0].numpy(), glyph, atol=0.02)  # 56x56 back to 28x28 gives the glyph


def test_support_folder_is_grouped_by_class_and_balanced(folder):
    support_dir, _, _ = folder
    (support_dir / "gamma" / "extra.png").write_bytes((support_dir / "gamma").iterdir().__next__().read_bytes())
    support = load_support_folder(support_dir)
    assert support.classes == ["alpha", "beta", "gamma"] and support.k_shot == 2  # the smallest class sets K
    assert support.images.shape == (6, 1, 28, 28) and support.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert load_support_folder(support_dir, k_shot=1).images.shape == (3, 1, 28, 28)


def test_a_metric_learner_classifies_queries_by_their_nearest_support_class(folder):
    support_dir, queries, _ = folder
    torch.manual_seed(0)
    learner = PrototypicalNetwork(Conv4()).eval()
    support = load_support_folder(support_dir)
    support_again = load_support_folder(support_dir)
    # a query that is one of the support images is given that image's class
    out = predict_images(learner, support, [support_again.images[i] for i in (0, 2, 4)])
    assert [p.label for p in out] == ["alpha", "beta", "gamma"]
    assert all(abs(sum(p.probabilities.values()) - 1) < 1e-3 for p in out)
    assert set(out[0].probabilities) == {"alpha", "beta", "gamma"}


def test_the_maml_family_needs_its_number_of_ways(folder):
    support_dir, queries, _ = folder
    learner = MAML(conv4_classifier(n_way=5), inner_lr=0.4, inner_steps=1)
    with pytest.raises(ValueError, match="built for 5-way tasks and the support set has 3 classes"):
        predict_images(learner, load_support_folder(support_dir), [load_image(queries[0])])
    three = MAML(conv4_classifier(n_way=3), inner_lr=0.4, inner_steps=1)
    assert len(predict_images(three, load_support_folder(support_dir), [load_image(q) for q in queries])) == 3


def test_bad_support_folders_say_what_is_wrong(tmp_path, folder):
    support_dir, queries, _ = folder
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_support_folder(tmp_path / "nowhere")
    (tmp_path / "one" / "only").mkdir(parents=True)
    with pytest.raises(ValueError, match="at least two classes"):
        load_support_folder(tmp_path / "one")
    (support_dir / "delta").mkdir()
    with pytest.raises(ValueError, match="'delta'.*hold no images"):
        load_support_folder(support_dir)
    (support_dir / "delta").rmdir()
    with pytest.raises(ValueError, match="3 shots per class asked for, but 'alpha' has 2"):
        load_support_folder(support_dir, k_shot=3)
    (support_dir / "beta" / "Thumbs.db").write_text("not an image, and not named as one: skipped")
    assert load_support_folder(support_dir).k_shot == 2
    (support_dir / "beta" / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read .*notes.png as an image"):
        load_support_folder(support_dir)


def test_the_command_predicts_with_a_shipped_learner(folder, capsys, tmp_path):
    support_dir, _, _ = folder
    queries = [sorted((support_dir / name).iterdir())[0] for name in ("alpha", "beta", "gamma")]
    out_json = tmp_path / "predictions.json"
    code = main(["predict", "--support", str(support_dir), *map(str, queries), "--json", str(out_json)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "protonet-1shot seed 0, 3-way 2-shot support" in printed.err
    rows = json.loads(out_json.read_text())
    assert [r["image"] for r in rows] == [str(q) for q in queries]
    assert all(r["label"] in ("alpha", "beta", "gamma") for r in rows)
    # each support image, given as a query, is named by its own class by the trained ProtoNet
    assert [r["label"] for r in rows] == ["alpha", "beta", "gamma"]


def test_the_command_refuses_bad_input_in_one_line(folder, capsys, tmp_path):
    support_dir, queries, _ = folder
    assert main(["predict", "--support", str(support_dir), str(tmp_path / "missing.png")]) == 2
    assert "no image at" in capsys.readouterr().err
    assert main(["predict", "--support", str(support_dir), "--learner", "nope", str(queries[0])]) == 2
    assert "unknown learner 'nope'" in capsys.readouterr().err
    assert main(["predict", "--support", str(support_dir), "--learner", "maml-1step", str(queries[0])]) == 2
    assert "built for 5-way tasks" in capsys.readouterr().err
