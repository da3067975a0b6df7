import numpy as np
import pytest
import torch

from mlcourse.baselines import pixel_nearest_neighbour
from mlcourse.episodes import Episode, EpisodeSampler
from mlcourse.evaluation import accuracy_ci, evaluate_episodes


def test_accuracy_ci_against_closed_form():
    acc = np.array([0.2, 0.4, 0.6, 0.8])
    mean, half = accuracy_ci(acc)
    assert mean == pytest.approx(0.5)
    s = np.sqrt(((acc - 0.5) ** 2).sum() / 3)
    assert half == pytest.approx(1.959963984540054 * s / 2)


def test_accuracy_ci_covers_the_truth_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(2000):
        acc = rng.binomial(20, 0.6, size=100) / 20
        m, h = accuracy_ci(acc)
        hits += abs(m - 0.6) <= h
    assert 0.93 <= hits / 2000 <= 0.97


@pytest.mark.parametrize("bad, message", [([0.5], "at least 2 episodes"), ([50.0, 60.0], "fractions"),
                                          ([[0.5, 0.5]], "one-dimensional"), ([0.5, float("nan")], "finite")])
def test_accuracy_ci_rejects_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        accuracy_ci(bad)


def test_pixel_nearest_neighbour_is_exact_on_copies():
    x = torch.rand(6, 1, 4, 4)
    ep = Episode(x, torch.arange(6), x.flip(0), torch.arange(6).flip(0), torch.arange(6))
    assert torch.equal(pixel_nearest_neighbour(ep), ep.query_y)


def test_pixel_baseline_beats_chance_on_fontglot(tiny_eval):
    sampler = EpisodeSampler(tiny_eval, n_way=5, k_shot=1, n_query=5, n_tasks=30, seed=0)
    mean, half, per = evaluate_episodes(pixel_nearest_neighbour, sampler.episodes(tiny_eval), progress=False)
    assert per.shape == (30,)
    assert mean - half > 0.2 + 0.15  # chance is 1/5


def test_evaluate_checks_prediction_shape(tiny_eval):
    sampler = EpisodeSampler(tiny_eval, n_way=5, k_shot=1, n_query=5, n_tasks=2, seed=0)
    with pytest.raises(ValueError, match="one label per query"):
        evaluate_episodes(lambda ep: torch.zeros(3), sampler.episodes(tiny_eval), progress=False)
