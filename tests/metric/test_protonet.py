import pytest
import torch

from mlcourse.backbones import Conv4
from mlcourse.evaluation import evaluate, paired_difference
from mlcourse.metric import (PrototypicalNetwork, pixel_nearest_neighbour, prototype_logits, prototypes,
                             prototypical_loss)
from mlcourse.training import meta_train


def test_prototypes_are_class_means():
    z = torch.randn(6, 3)
    y = torch.tensor([1, 0, 1, 2, 0, 2])
    p = prototypes(z, y, 3)
    torch.testing.assert_close(p[0], (z[1] + z[4]) / 2)
    torch.testing.assert_close(p[2], (z[3] + z[5]) / 2)


def test_missing_class_is_explained():
    with pytest.raises(ValueError, match="no example of labels \\[2\\]"):
        prototypes(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]), 3)


def test_logits_are_negative_squared_distances():
    q, p = torch.randn(5, 4), torch.randn(3, 4)
    expected = torch.tensor([[-float(((qi - pj) ** 2).sum()) for pj in p] for qi in q])
    torch.testing.assert_close(prototype_logits(q, p), expected)


def test_loss_gradient_matches_finite_differences():
    z_s = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    z_q = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
    y_s = torch.tensor([0, 0, 1, 1, 2, 2])
    y_q = torch.tensor([0, 1, 2] * 3)
    assert torch.autograd.gradcheck(lambda a, b: prototypical_loss(a, y_s, b, y_q, 3), (z_s, z_q))


def test_loss_closed_form_for_two_points():
    # one prototype at 0 and one at d: the query at 0 has p(correct) = 1 / (1 + exp(-d^2))
    d = 1.5
    loss = prototypical_loss(torch.tensor([[0.0], [d]]), torch.tensor([0, 1]), torch.tensor([[0.0]]),
                             torch.tensor([0]), 2)
    assert loss.item() == pytest.approx(float(torch.log1p(torch.exp(torch.tensor(-d * d)))))


@pytest.mark.slow
def test_protonet_beats_pixel_baseline_on_fontglot(tiny_root, tiny_eval):
    from mlcourse.data import FontGlot

    background = FontGlot("background", preset="tiny", root=tiny_root, progress=False)
    torch.manual_seed(0)
    model = PrototypicalNetwork(Conv4())
    meta_train(model, background, n_steps=120, meta_batch_size=1, n_way=5, k_shot=1, n_query=5, outer_lr=1e-3, seed=0,
               device="cpu", progress=False)
    proto = evaluate(model, tiny_eval, n_way=5, k_shot=1, n_query=15, n_episodes=200, seed=7, device="cpu")
    pixel = evaluate(pixel_nearest_neighbour, tiny_eval, n_way=5, k_shot=1, n_query=15, n_episodes=200, seed=7,
                     device="cpu")
    assert proto.mean - proto.half_width > pixel.mean + pixel.half_width + 0.05, (proto, pixel)
    # on the same episodes the paired difference settles it too
    d = paired_difference(proto, pixel)
    assert d.settled and d.mean > 0.05, d


def test_embedding_support_and_queries_jointly_or_apart():
    torch.manual_seed(0)
    model = PrototypicalNetwork(Conv4(hidden=8))
    sx, sy, qx = torch.randn(6, 1, 28, 28), torch.tensor([0, 1, 2] * 2), torch.randn(9, 1, 28, 28)
    model.train()
    joint = model(sx, sy, qx)
    z = model.embed(torch.cat([sx, qx]))
    torch.testing.assert_close(joint, prototype_logits(z[6:], prototypes(z[:6], sy, 3)))
    model.embed_jointly = False  # two batches, each with its own BatchNorm statistics (easyfsl's way)
    apart = model(sx, sy, qx)
    torch.testing.assert_close(apart, prototype_logits(model.embed(qx), prototypes(model.embed(sx), sy, 3)))
    assert not torch.allclose(apart, joint)
    model.eval()  # with running statistics the two are the same
    with torch.no_grad():
        apart = model(sx, sy, qx)
        model.embed_jointly = True
        torch.testing.assert_close(model(sx, sy, qx), apart)
