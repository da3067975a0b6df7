import numpy as np
import pytest
import torch
from torch import nn

from mlcourse.backbones import Conv4
from mlcourse.episodes import Episode, EpisodeSampler
from mlcourse.evaluation import Difference, EvalResult, accuracy, accuracy_ci, eval_mode, evaluate, paired_difference
from mlcourse.metric import PrototypicalNetwork, pixel_nearest_neighbour

Z = 1.959963984540054


def test_accuracy_ci_against_closed_form():
    acc = np.array([0.2, 0.4, 0.6, 0.8])
    mean, half = accuracy_ci(acc)
    assert mean == pytest.approx(0.5)
    s = np.sqrt(((acc - 0.5) ** 2).sum() / 3)
    assert half == pytest.approx(Z * s / 2)


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
    result = evaluate(pixel_nearest_neighbour, tiny_eval, n_way=5, k_shot=1, n_query=5, n_episodes=30, seed=0,
                      device="cpu")
    assert result.per_episode.shape == (30,)
    assert result.seed == 0 and result.shape == (5, 1, 5)
    assert result.mean - result.half_width > 0.2 + 0.15  # chance is 1/5


def test_evaluate_checks_prediction_shape(tiny_eval):
    with pytest.raises(ValueError, match="one label per query"):
        evaluate(lambda ep: torch.zeros(3), tiny_eval, n_way=5, k_shot=1, n_query=5, n_episodes=2, device="cpu")


def test_a_function_baseline_sees_the_episodes_of_the_episode_sampler(tiny_eval):
    """evaluate(fn, seed=s) draws exactly the episodes of EpisodeSampler(seed=s), in the same order."""
    result = evaluate(pixel_nearest_neighbour, tiny_eval, n_way=5, k_shot=2, n_query=3, n_episodes=12, seed=4,
                      device="cpu")
    sampler = EpisodeSampler(tiny_eval, 5, 2, 3, n_tasks=12, seed=4)
    by_hand = np.array([(pixel_nearest_neighbour(ep) == ep.query_y).float().mean().item()
                        for ep in sampler.episodes(tiny_eval)])
    np.testing.assert_array_equal(result.per_episode, by_hand)
    mean, half = accuracy_ci(by_hand)
    assert (result.mean, result.half_width) == (pytest.approx(mean), pytest.approx(half))


def _protonet():
    torch.manual_seed(0)
    return PrototypicalNetwork(Conv4(hidden=16))


def test_embedding_once_gives_the_accuracies_of_episode_by_episode_prediction(tiny_eval):
    proto = _protonet()
    with torch.no_grad():  # BatchNorm running statistics other than their initial values
        proto.embed(torch.rand(32, 1, 28, 28))
    fast = evaluate(proto, tiny_eval, n_way=5, k_shot=2, n_query=3, n_episodes=10, seed=4, device="cpu")
    assert proto.training
    # a plain function is not embedded once: each episode goes through predict; it runs the model
    # as it is, so put it in the evaluator's eval mode (BatchNorm with running statistics)
    proto.eval()
    slow = evaluate(lambda ep: proto.predict(ep), tiny_eval, n_way=5, k_shot=2, n_query=3, n_episodes=10, seed=4,
                    device="cpu")
    assert fast.per_episode.shape == (10,) and fast.per_episode.std() > 0  # not a degenerate comparison
    np.testing.assert_allclose(fast.per_episode, slow.per_episode)
    assert (fast.mean, fast.half_width) == (pytest.approx(slow.mean), pytest.approx(slow.half_width))


def test_precomputed_embeddings_are_used(tiny_eval):
    from mlcourse.evaluation import embed_dataset

    proto = _protonet()
    z = embed_dataset(proto, tiny_eval, device="cpu")
    a = evaluate(proto, tiny_eval, n_way=5, k_shot=1, n_query=3, n_episodes=8, seed=2, device="cpu")
    b = evaluate(proto, tiny_eval, n_way=5, k_shot=1, n_query=3, n_episodes=8, seed=2, device="cpu", embeddings=z)
    np.testing.assert_array_equal(a.per_episode, b.per_episode)
    # embeddings of other (here: random) vectors change the answers: they are not ignored
    c = evaluate(proto, tiny_eval, n_way=5, k_shot=1, n_query=3, n_episodes=8, seed=2, device="cpu",
                 embeddings=torch.randn_like(z))
    assert not np.array_equal(a.per_episode, c.per_episode)


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_restores_the_training_mode(training, tiny_eval):
    proto = _protonet().train(training)
    seen = []
    real = proto.predict

    def predict(ep):  # the predict path (options make the evaluator call predict)
        seen.append(proto.training)
        return real(ep)

    proto.predict = lambda ep, **options: predict(ep)
    evaluate(proto, tiny_eval, n_way=3, k_shot=1, n_query=2, n_episodes=3, device="cpu", unused_option=None)
    assert seen == [False] * 3, "the learner must be in eval mode during the evaluation"
    assert proto.training == training
    assert all(m.training == training for m in proto.modules())
    evaluate(proto, tiny_eval, n_way=3, k_shot=1, n_query=2, n_episodes=3, device="cpu")  # the embedding path
    assert all(m.training == training for m in proto.modules())


def test_eval_mode_restores_every_submodule_mode():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2), nn.BatchNorm1d(2)).train()
    net[1].eval()  # a frozen BatchNorm inside a module in train mode
    with eval_mode(net) as inner:
        assert inner is net and not any(m.training for m in net.modules())
    assert net.training and net[0].training and net[2].training and net[3].training
    assert not net[1].training, "a BatchNorm left in eval mode must stay in eval mode"
    # also when the block raises
    with pytest.raises(RuntimeError):
        with eval_mode(net):
            raise RuntimeError
    assert [m.training for m in net] == [True, False, True, True]


def _result(per_episode, seed=0, shape=(5, 1, 15)):
    return EvalResult.from_accuracies(np.asarray(per_episode, dtype=float), seed=seed, shape=shape)


def test_paired_difference_is_the_mean_difference_with_its_own_interval():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.3, 1.0, size=50)
    b = np.clip(a - rng.normal(0.05, 0.05, size=50), 0, 1)
    d = paired_difference(_result(a), _result(b))
    diff = a - b
    half = Z * diff.std(ddof=1) / np.sqrt(diff.size)
    assert isinstance(d, Difference) and d.n_episodes == 50
    assert d.mean == pytest.approx(diff.mean()) and d.half_width == pytest.approx(half)
    assert d.settled == (abs(diff.mean()) > half)
    # the paired interval is narrower than either interval alone when the episodes are hard for both
    assert d.half_width < _result(a).half_width


def test_settled_is_whether_the_interval_excludes_zero():
    assert Difference(0.05, 0.02, 10).settled and Difference(-0.05, 0.02, 10).settled
    assert not Difference(0.01, 0.02, 10).settled and not Difference(-0.01, 0.02, 10).settled
    same = paired_difference(_result([0.2, 0.5, 0.9]), _result([0.2, 0.5, 0.9]))
    assert (same.mean, same.half_width, same.settled) == (0.0, 0.0, False)
    clear = paired_difference(_result([0.9, 0.8, 1.0, 0.9]), _result([0.2, 0.3, 0.2, 0.1]))
    assert clear.settled and clear.mean > 0


@pytest.mark.parametrize("other", [dict(seed=1), dict(shape=(5, 5, 15)), dict(n=5)])
def test_paired_difference_refuses_results_of_other_episodes(other):
    a = _result([0.5, 0.6, 0.7, 0.8])
    b = _result([0.5, 0.6, 0.7, 0.8, 0.9][:other.pop("n", 4)], **other)
    with pytest.raises(ValueError, match="identical episodes"):
        paired_difference(a, b)


def test_paired_difference_of_two_learners_on_the_same_seed(tiny_eval):
    kwargs = dict(n_way=5, k_shot=1, n_query=5, n_episodes=20, seed=3, device="cpu")
    pixel = evaluate(pixel_nearest_neighbour, tiny_eval, **kwargs)
    chance = evaluate(lambda ep: torch.zeros_like(ep.query_y), tiny_eval, **kwargs)
    d = paired_difference(pixel, chance)
    assert d.mean == pytest.approx(pixel.mean - 0.2) and d.settled


def test_fast_evaluation_equals_episode_by_episode_prediction(tiny_eval):
    """The embedded path of a metric learner scores exactly what its predict does on the sampler's episodes."""
    model = _protonet().eval()
    fast = evaluate(model, tiny_eval, n_way=5, k_shot=2, n_query=3, n_episodes=10, seed=4, device="cpu")
    sampler = EpisodeSampler(tiny_eval, 5, 2, 3, n_tasks=10, seed=4)
    slow = np.array([(model.predict(ep) == ep.query_y).float().mean().item() for ep in sampler.episodes(tiny_eval)])
    np.testing.assert_allclose(fast.per_episode, slow)


def test_accuracy_is_the_fraction_labelled_right_in_eval_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3)).train()
    x, y = torch.randn(37, 4), torch.randint(0, 3, (37,))
    model(x)  # running statistics
    with torch.no_grad():
        expected = (model.eval()(x).argmax(1) == y).float().mean().item()
    model.train()
    for batch_size in (5, 512):  # batched in eval mode: the batch size does not matter
        assert accuracy(model, x, y, batch_size=batch_size) == pytest.approx(expected)
    assert model.training and all(m.training for m in model.modules())
    with pytest.raises(ValueError, match="37 inputs but 36 labels"):
        accuracy(model, x, y[:-1])
