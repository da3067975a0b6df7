import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from mlcourse.episodes import Episode, EpisodeSampler, sample_episode_indices


def _labels(n_classes=10, per_class=8):
    return np.repeat(np.arange(n_classes) * 3 + 7, per_class)  # ids need not be 0..C-1


def test_indices_follow_the_specified_draw(rng):
    labels = _labels()
    sup, qry, classes = sample_episode_indices(labels, 4, 2, 3, np.random.default_rng(5))
    ref = np.random.default_rng(5)
    exp_classes = ref.choice(np.unique(labels), 4, replace=False)
    np.testing.assert_array_equal(classes, exp_classes)
    for i, c in enumerate(exp_classes):
        chosen = ref.choice(np.flatnonzero(labels == c), 5, replace=False)
        np.testing.assert_array_equal(sup[2 * i:2 * i + 2], chosen[:2])
        np.testing.assert_array_equal(qry[3 * i:3 * i + 3], chosen[2:])


def test_support_and_query_are_disjoint_and_from_the_right_classes(rng):
    labels = _labels()
    for _ in range(20):
        sup, qry, classes = sample_episode_indices(labels, 5, 3, 4, rng)
        assert len(set(sup) | set(qry)) == 5 * 7
        assert set(labels[sup]) == set(labels[qry]) == set(classes)
        np.testing.assert_array_equal(labels[sup], np.repeat(classes, 3))


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_way=11, k_shot=1, n_query=1), "n_way=11 is larger than the number of classes in the data set \\(10\\)"),
    (dict(n_way=5, k_shot=5, n_query=4), "5 \\+ 4 = 9 examples per class are needed, but class .* has only 8"),
    (dict(n_way=0, k_shot=1, n_query=1), "n_way must be at least 1, got 0"),
    (dict(n_way=5, k_shot=-1, n_query=1), "k_shot must be at least 1, got -1"),
    (dict(n_way=5, k_shot=1, n_query=0), "n_query must be at least 1, got 0"),
])
def test_bad_requests_name_the_numbers(kwargs, message, rng):
    with pytest.raises(ValueError, match=message):
        sample_episode_indices(_labels(), rng=rng, **kwargs)
    with pytest.raises(ValueError, match=message):
        EpisodeSampler(_labels(), n_tasks=3, **kwargs)


def test_non_integer_sizes_are_type_errors(rng):
    with pytest.raises(TypeError, match="k_shot must be an int"):
        sample_episode_indices(_labels(), 5, 1.5, 1, rng)


def test_a_small_class_is_named():
    labels = np.concatenate([_labels(), [99, 99, 99]])  # class 99 has 3 examples
    with pytest.raises(ValueError, match="class 99 has only 3"):
        EpisodeSampler(labels, n_way=5, k_shot=5, n_query=1, n_tasks=1)


def test_sampler_with_dataloader_gives_remapped_episodes():
    labels = _labels()
    x = torch.arange(len(labels), dtype=torch.float32)[:, None, None, None].expand(-1, 1, 2, 2)
    ds = TensorDataset(x, torch.as_tensor(labels))
    sampler = EpisodeSampler(ds.tensors[1], n_way=3, k_shot=2, n_query=4, n_tasks=5, seed=0)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=sampler.collate)
    episodes = list(loader)
    assert len(episodes) == 5
    for ep in episodes:
        assert isinstance(ep, Episode)
        assert ep.support_x.shape == (6, 1, 2, 2) and ep.query_x.shape == (12, 1, 2, 2)
        assert ep.support_y.tolist() == [0, 0, 1, 1, 2, 2]
        assert ep.query_y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
        # the original label of every example is classes[episode label]
        orig = torch.as_tensor(labels)[ep.support_x[:, 0, 0, 0].long()]
        assert torch.equal(orig, ep.classes[ep.support_y])
        assert (ep.n_way, ep.k_shot, ep.n_query) == (3, 2, 4)


def test_same_seed_same_episodes_and_every_epoch():
    labels = _labels()
    a = EpisodeSampler(labels, 5, 1, 2, n_tasks=4, seed=3)
    b = EpisodeSampler(labels, 5, 1, 2, n_tasks=4, seed=3)
    assert list(a) == list(b) == list(a)
    assert list(a) != list(EpisodeSampler(labels, 5, 1, 2, n_tasks=4, seed=4))


def test_episodes_from_fontglot(tiny_eval):
    sampler = EpisodeSampler(tiny_eval, n_way=5, k_shot=1, n_query=15, n_tasks=2, seed=0)
    ep = next(sampler.episodes(tiny_eval))
    assert ep.support_x.shape == (5, 1, 28, 28) and ep.query_x.shape == (75, 1, 28, 28)
    assert ep.to("cpu").support_x.device.type == "cpu"
