import pytest
import torch

from mlcourse.backbones import Conv4
from mlcourse.episodes import Episode
from mlcourse.evaluation import evaluate
from mlcourse.metric import RelationNetwork, SiameseNetwork
from mlcourse.training import meta_train


def _episode(n_way=3, k_shot=2, n_query=4):
    torch.manual_seed(0)
    sx = torch.rand(n_way * k_shot, 1, 28, 28)
    qx = torch.rand(n_way * n_query, 1, 28, 28)
    return Episode(sx, torch.arange(n_way).repeat_interleave(k_shot), qx,
                   torch.arange(n_way).repeat_interleave(n_query), torch.arange(n_way))


def test_siamese_similarity_is_symmetric_probability():
    model = SiameseNetwork(Conv4()).eval()
    a, b = torch.rand(5, 1, 28, 28), torch.rand(5, 1, 28, 28)
    p = model.similarity(a, b)
    assert p.shape == (5,) and bool(((p > 0) & (p < 1)).all())
    torch.testing.assert_close(p, model.similarity(b, a))


def test_siamese_class_score_is_best_support_image():
    model = SiameseNetwork(Conv4()).eval()
    ep = _episode()
    with torch.no_grad():
        scores = model(ep.support_x, ep.support_y, ep.query_x)
        z = model.embed(torch.cat([ep.support_x, ep.query_x]))
        pair = model.pair_logits(z[6:], z[:6])
    torch.testing.assert_close(scores, pair.view(12, 3, 2).amax(dim=2))


def test_siamese_loss_is_balanced_pair_bce():
    model = SiameseNetwork(Conv4())
    ep = _episode(n_way=3, k_shot=1, n_query=1)
    loss, _ = model.episode_loss(ep)
    z = model.embed(torch.cat([ep.support_x, ep.query_x]))
    pair = model.pair_logits(z[3:], z[:3])
    eye = torch.eye(3)
    manual = -(2 * eye * torch.nn.functional.logsigmoid(pair) + (1 - eye) * torch.nn.functional.logsigmoid(-pair))
    torch.testing.assert_close(loss, manual.mean())


def test_relation_scores_shape_and_sum_over_shots():
    model = RelationNetwork().eval()
    ep = _episode()
    with torch.no_grad():
        scores = model(ep.support_x, ep.support_y, ep.query_x)
        assert scores.shape == (12, 3)
        # duplicating every shot doubles the class feature sum, which changes the relation input
        z_s = model.embed(ep.support_x)
        z_q = model.embed(ep.query_x)
        classes = z_s.view(3, 2, *z_s.shape[1:]).sum(1)
        pairs = torch.cat([classes[None].expand(12, -1, -1, -1, -1), z_q[:, None].expand(-1, 3, -1, -1, -1)], 2)
        torch.testing.assert_close(model.scores(z_s, ep.support_y, z_q, 3), model.relation(pairs.flatten(0, 1)).view(12, 3))


def test_relation_loss_is_mse_to_one_hot():
    model = RelationNetwork()
    scores = torch.tensor([[2.0, -1.0], [0.0, 0.5]])
    y = torch.tensor([0, 1])
    expected = ((torch.sigmoid(scores) - torch.tensor([[1.0, 0], [0, 1]])) ** 2).mean()
    torch.testing.assert_close(model.loss(scores, y), expected)


@pytest.mark.slow
@pytest.mark.parametrize("make", [lambda: SiameseNetwork(Conv4()), lambda: RelationNetwork()],
                         ids=["siamese", "relation"])
def test_learns_above_chance(make, tiny_root, tiny_eval):
    from mlcourse.data import FontGlot

    background = FontGlot("background", preset="tiny", root=tiny_root, progress=False)
    torch.manual_seed(0)
    model = make()
    meta_train(model, background, n_steps=80, meta_batch_size=1, n_way=5, k_shot=1, n_query=5, seed=0, device="cpu",
               progress=False)
    result = evaluate(model, tiny_eval, n_way=5, k_shot=1, n_query=15, n_episodes=100, seed=3, device="cpu")
    assert result.mean - result.half_width > 0.2 + 0.25, result  # chance is 0.2


def test_relation_mean_and_sum_agree_at_one_shot_only():
    model = RelationNetwork().eval()
    with torch.no_grad():
        for k_shot, same in [(1, True), (3, False)]:
            ep = _episode(n_way=3, k_shot=k_shot, n_query=2)
            model.aggregate = "sum"
            a = model(ep.support_x, ep.support_y, ep.query_x)
            model.aggregate = "mean"
            b = model(ep.support_x, ep.support_y, ep.query_x)
            assert torch.allclose(a, b) == same
    with pytest.raises(ValueError, match="aggregate must be"):
        RelationNetwork(aggregate="max")
