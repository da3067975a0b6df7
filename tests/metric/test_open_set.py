import numpy as np
import pytest
import torch
from torch import nn

from mlcourse.backbones import Conv4
from mlcourse.data.base import CharacterDataset
from mlcourse.evaluation import embed_dataset
from mlcourse.metric import REJECTION_SCORES, PrototypicalNetwork
from mlcourse.metric.open_set import open_set_evaluation


def _clusters(spread):
    """20 classes whose images are their class id written into pixel (0, c): well separated when spread is small."""
    rng = np.random.default_rng(0)
    images = np.zeros((20 * 20, 4, 20), dtype=np.uint8)
    targets = np.repeat(np.arange(20), 20)
    images[np.arange(400), 0, targets] = 200
    images = np.clip(images + rng.normal(0, spread, images.shape), 0, 255).astype(np.uint8)
    return CharacterDataset(images, targets, [str(i) for i in range(20)], ["a"] * 20)


def test_rejection_scores_are_named():
    assert set(REJECTION_SCORES) == {"nearest_distance", "max_softmax"}
    s = torch.tensor([[-1.0, -4.0], [-9.0, -9.0]])
    torch.testing.assert_close(REJECTION_SCORES["nearest_distance"](s), torch.tensor([1.0, 9.0]))
    torch.testing.assert_close(REJECTION_SCORES["max_softmax"](s), 1 - torch.softmax(s, 1).max(1).values)


def test_separated_classes_are_rejected_noise_is_not():
    model = PrototypicalNetwork(nn.Flatten())
    clean = open_set_evaluation(model, _clusters(spread=5), n_way=5, k_shot=1, n_query=5, n_episodes=30, device="cpu")
    assert clean["nearest_distance"]["auroc"] > 0.95
    noisy = open_set_evaluation(model, _clusters(spread=400), n_way=5, k_shot=1, n_query=5, n_episodes=30,
                                device="cpu")
    assert abs(noisy["nearest_distance"]["auroc"] - 0.5) < 0.1
    assert clean["max_softmax"]["scores"].shape == (30 * 50,)
    # half of the queries of every episode come from the unknown classes
    assert clean["max_softmax"]["unknown"].shape == (30 * 50,) and clean["max_softmax"]["unknown"].mean() == 0.5


@pytest.mark.parametrize("training", [True, False])
def test_open_set_evaluation_leaves_the_model_in_its_mode(training):
    torch.manual_seed(0)
    model = PrototypicalNetwork(Conv4(hidden=4, n_blocks=2)).train(training)
    model.backbone.encoder[0][1].eval()  # a frozen BatchNorm stays as it was
    modes = [m.training for m in model.modules()]
    assert any(modes) == training and not all(modes)
    data = _clusters(spread=5)
    open_set_evaluation(model, data, n_way=5, k_shot=1, n_query=2, n_episodes=3, device="cpu")
    assert [m.training for m in model.modules()] == modes
    # and with precomputed embeddings
    z = embed_dataset(model, data, device="cpu")
    assert [m.training for m in model.modules()] == modes
    open_set_evaluation(model, data, n_way=5, k_shot=1, n_query=2, n_episodes=3, device="cpu", embeddings=z)
    assert [m.training for m in model.modules()] == modes
