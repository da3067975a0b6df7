import numpy as np
import torch
from torch import nn

from mlcourse.data.base import CharacterDataset
from mlcourse.metric import PrototypicalNetwork
from mlcourse.metric.open_set import open_set_evaluation


def _clusters(spread):
    """20 classes whose images are their class id written into pixel (0, c): well separated when spread is small."""
    rng = np.random.default_rng(0)
    images = np.zeros((20 * 20, 4, 20), dtype=np.uint8)
    targets = np.repeat(np.arange(20), 20)
    images[np.arange(400), 0, targets] = 200
    images = np.clip(images + rng.normal(0, spread, images.shape), 0, 255).astype(np.uint8)
    return CharacterDataset(images, targets, [str(i) for i in range(20)], ["a"] * 20)


def test_separated_classes_are_rejected_noise_is_not():
    model = PrototypicalNetwork(nn.Flatten())
    clean = open_set_evaluation(model, _clusters(spread=5), n_way=5, k_shot=1, n_query=5, n_episodes=30, device="cpu")
    assert clean["distance to nearest class"]["auroc"] > 0.95
    noisy = open_set_evaluation(model, _clusters(spread=400), n_way=5, k_shot=1, n_query=5, n_episodes=30,
                                device="cpu")
    assert abs(noisy["distance to nearest class"]["auroc"] - 0.5) < 0.1
    assert clean["1 - max softmax"]["scores"].shape == (30 * 50,)
