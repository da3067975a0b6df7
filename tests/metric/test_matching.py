"""Matching networks: attention over the support set that sums to one, log-probabilities, invariances."""
import pytest
import torch
import torch.nn.functional as F

from mlcourse.backbones import Conv4
from mlcourse.episodes import Episode
from mlcourse.evaluation import evaluate
from mlcourse.metric import MatchingNetwork, matching_attention
from mlcourse.training import meta_train


def _episode(n_way=3, k_shot=2, n_query=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    sx = torch.rand(n_way * k_shot, 1, 28, 28, generator=g)
    qx = torch.rand(n_way * n_query, 1, 28, 28, generator=g)
    return Episode(sx, torch.arange(n_way).repeat_interleave(k_shot), qx,
                   torch.arange(n_way).repeat_interleave(n_query), torch.arange(n_way))


def test_attention_rows_sum_to_one_and_follow_the_cosine():
    s, q = torch.randn(6, 16, dtype=torch.float64), torch.randn(4, 16, dtype=torch.float64)
    a = matching_attention(s, q, scale=3.0)
    torch.testing.assert_close(a.sum(1), torch.ones(4, dtype=torch.float64))
    cos = torch.stack([torch.stack([F.cosine_similarity(qi, sj, dim=0) for sj in s]) for qi in q])
    torch.testing.assert_close(a, torch.softmax(3.0 * cos, dim=1))  # the closed form, pair by pair


def test_scores_are_log_probabilities_summed_over_each_class():
    model = MatchingNetwork(Conv4(hidden=8)).eval()
    s, q = torch.randn(6, 16, dtype=torch.float64), torch.randn(5, 16, dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    scores = model.scores(s, y, q, 3)
    torch.testing.assert_close(scores.exp().sum(1), torch.ones(5, dtype=torch.float64))
    a = matching_attention(s, q)
    torch.testing.assert_close(scores.exp(), torch.stack([a[:, y == k].sum(1) for k in range(3)], dim=1))
    # cross-entropy on these scores is the negative log-probability of the label (the paper's loss)
    target = torch.tensor([0, 1, 2, 0, 1])
    torch.testing.assert_close(F.cross_entropy(scores, target), -scores[torch.arange(5), target].mean())


def test_prediction_is_invariant_to_the_order_of_the_support_set():
    model = MatchingNetwork(Conv4(hidden=8)).eval()
    ep = _episode()
    perm = torch.randperm(len(ep.support_y), generator=torch.Generator().manual_seed(1))
    shuffled = Episode(ep.support_x[perm], ep.support_y[perm], ep.query_x, ep.query_y, ep.classes)
    with torch.no_grad():
        torch.testing.assert_close(model(ep.support_x, ep.support_y, ep.query_x),
                                   model(shuffled.support_x, shuffled.support_y, shuffled.query_x))


def test_renaming_the_classes_permutes_the_scores():
    model = MatchingNetwork(Conv4(hidden=8)).eval()
    s, q = torch.randn(6, 16), torch.randn(5, 16)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    rename = torch.tensor([2, 0, 1])  # class k is called rename[k]
    torch.testing.assert_close(model.scores(s, rename[y], q, 3)[:, rename], model.scores(s, y, q, 3))


def test_sharp_attention_is_the_cosine_nearest_neighbour():
    model = MatchingNetwork(Conv4(hidden=8), scale=1e4).eval()
    s, q = torch.randn(6, 16, dtype=torch.float64), torch.randn(20, 16, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    nearest = y[(F.normalize(q, dim=1) @ F.normalize(s, dim=1).T).argmax(1)]
    assert torch.equal(model.scores(s, y, q, 3).argmax(1), nearest)


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="scale must be positive"):
        MatchingNetwork(Conv4(hidden=8), scale=0)
    model = MatchingNetwork(Conv4(hidden=8))
    with pytest.raises(ValueError, match="no example of labels \\[2\\]"):
        model.scores(torch.randn(2, 4), torch.tensor([0, 1]), torch.randn(3, 4), 3)


@pytest.mark.slow
def test_matching_network_learns_above_chance(tiny_root, tiny_eval):
    from mlcourse.data import FontGlot

    background = FontGlot("background", preset="tiny", root=tiny_root, progress=False)
    torch.manual_seed(0)
    model = MatchingNetwork(Conv4())
    meta_train(model, background, n_steps=80, n_way=5, k_shot=1, n_query=5, seed=0, device="cpu", progress=False)
    result = evaluate(model, tiny_eval, n_way=5, k_shot=1, n_query=15, n_episodes=100, seed=3, device="cpu")
    assert result.mean - result.half_width > 0.2 + 0.25, result  # chance is 0.2
