"""Black-box learners: shapes, order (in)variance, clear errors, and that they learn."""
import pytest
import torch

from mlcourse.backbones import Conv4
from mlcourse.blackbox import AveragingLearner, RecurrentLearner, aggregate_mean, order_sensitivity, shuffle_support
from mlcourse.data import FontGlot
from mlcourse.episodes import Episode
from mlcourse.evaluation import evaluate
from mlcourse.training import meta_train


def episode(n_way=5, k_shot=3, n_query=4, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return Episode(torch.rand(n_way * k_shot, 1, 28, 28, generator=g, dtype=dtype),
                   torch.arange(n_way).repeat_interleave(k_shot),
                   torch.rand(n_way * n_query, 1, 28, 28, generator=g, dtype=dtype),
                   torch.arange(n_way).repeat_interleave(n_query), torch.arange(n_way))


def small(cls, **kw):
    torch.manual_seed(0)
    return cls(n_way=5, hidden=32, encoder=Conv4(hidden=16), **kw)


@pytest.mark.parametrize("cls", [RecurrentLearner, AveragingLearner])
def test_output_shapes(cls):
    model = small(cls).eval()
    sx, qx = torch.rand(3, 10, 1, 28, 28), torch.rand(3, 7, 1, 28, 28)
    sy = torch.arange(5).repeat_interleave(2).repeat(3, 1)
    assert model(sx, sy, qx).shape == (3, 7, 5)
    assert model.forward_task(episode()).shape == (20, 5)
    assert model.predict(episode()).shape == (20,)


def test_predict_keeps_the_support_order_and_the_training_mode():
    """predict runs in eval mode (no shuffled support, so the order-sensitive LSTM answers
    deterministically) and leaves a learner in training mode as it found it."""
    model = small(RecurrentLearner).train()
    task = episode()
    preds = [model.predict(task) for _ in range(3)]
    assert model.training and all(m.training for m in model.modules())
    with torch.no_grad():
        expected = model.eval().forward_task(task).argmax(-1)
    assert all(torch.equal(p, expected) for p in preds)


def test_averaging_learner_is_exactly_order_invariant():
    model = small(AveragingLearner).double().eval()
    task = episode(dtype=torch.float64)
    with torch.no_grad():
        ref = model.forward_task(task)
        for seed in range(5):
            shuffled = shuffle_support(task, torch.Generator().manual_seed(seed))
            assert not torch.equal(shuffled.support_y, task.support_y)
            out = model.forward_task(shuffled)
            torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


def test_aggregate_mean_is_invariant_and_checks_shapes():
    z = torch.randn(2, 6, 4, dtype=torch.float64)
    perm = torch.randperm(6)
    torch.testing.assert_close(aggregate_mean(z[:, perm]), aggregate_mean(z), rtol=0, atol=1e-14)
    torch.testing.assert_close(aggregate_mean(z), z.mean(1))
    with pytest.raises(ValueError, match="shape"):
        aggregate_mean(torch.randn(6, 4))
    with pytest.raises(ValueError, match="empty"):
        aggregate_mean(torch.randn(2, 0, 4))


def test_recurrent_learner_depends_on_order():
    model = small(RecurrentLearner).eval()
    task = episode()
    with torch.no_grad():
        ref = model.forward_task(task)
        out = model.forward_task(shuffle_support(task, torch.Generator().manual_seed(0)))
    assert (out - ref).abs().max() > 1e-4


def test_queries_do_not_see_each_other():
    """Changing one query leaves the logits of the others unchanged."""
    for cls in (RecurrentLearner, AveragingLearner):
        model = small(cls).eval()
        task = episode()
        other = Episode(task.support_x, task.support_y, task.query_x.clone(), task.query_y, task.classes)
        other.query_x[0] = 0
        with torch.no_grad():
            a, b = model.forward_task(task), model.forward_task(other)
        torch.testing.assert_close(a[1:], b[1:], rtol=1e-5, atol=1e-5)


def test_clear_errors():
    model = small(AveragingLearner)
    with pytest.raises(ValueError, match="n_way"):
        model.forward_task(episode(n_way=3))
    with pytest.raises(ValueError, match="batched images"):
        model(torch.rand(5, 1, 28, 28), torch.arange(5), torch.rand(5, 1, 28, 28))
    with pytest.raises(ValueError, match="labels must lie"):
        model(torch.rand(1, 2, 1, 28, 28), torch.tensor([[0, 7]]), torch.rand(1, 2, 1, 28, 28))
    with pytest.raises(ValueError, match="same shape"):
        model.meta_loss([episode(k_shot=1), episode(k_shot=2)])
    with pytest.raises(ValueError, match="n_way"):
        AveragingLearner(n_way=1)


def test_order_sensitivity_is_zero_for_the_average(tiny_eval):
    model = small(AveragingLearner)
    res = order_sensitivity(model, tiny_eval, n_way=5, k_shot=3, n_query=5, n_episodes=4, n_orders=3, device="cpu")
    assert res == {"changed": 0.0, "tv": pytest.approx(0.0, abs=1e-6), "accuracy_range": 0.0}
    assert model.training, "order_sensitivity must restore training mode"


@pytest.mark.slow
@pytest.mark.parametrize("cls", [RecurrentLearner, AveragingLearner])
def test_black_box_learners_beat_chance_on_fontglot(cls, tiny_root, tiny_eval):
    background = FontGlot("background", preset="tiny", root=tiny_root, progress=False)
    torch.manual_seed(0)
    # the LSTM needs a wider state and more steps to leave chance level (lecture 4)
    hidden, steps, lr = (128, 200, 3e-3) if cls is RecurrentLearner else (64, 150, 1e-3)
    model = cls(n_way=5, hidden=hidden, encoder=Conv4(hidden=32))
    meta_train(model, background, n_steps=steps, meta_batch_size=8, n_way=5, k_shot=[1, 2, 3], n_query=5,
               outer_lr=lr, device="cpu", progress=False, seed=0)
    result = evaluate(model, tiny_eval, n_way=5, k_shot=3, n_query=10, n_episodes=100, seed=3, device="cpu")
    mean, half = result.mean, result.half_width
    assert mean - half > 0.2 + 0.15, f"{cls.__name__}: {mean:.3f} ± {half:.3f} (chance is 0.2)"


def test_meta_train_draws_shots_from_a_list_and_checks_it(tiny_root):
    background = FontGlot("background", preset="tiny", root=tiny_root, progress=False)
    model = small(AveragingLearner)
    seen = []
    real = model.meta_step
    model.meta_step = lambda tasks, opt: seen.append(tasks[0].k_shot) or real(tasks, opt)
    meta_train(model, background, n_steps=12, meta_batch_size=2, n_way=5, k_shot=[1, 3], n_query=2, device="cpu",
               progress=False)
    assert set(seen) == {1, 3}
    for bad in ([], [0, 1], 2.5):
        with pytest.raises(ValueError, match="k_shot"):
            meta_train(model, background, n_steps=1, k_shot=bad, device="cpu", progress=False)


@pytest.mark.parametrize("cls", [RecurrentLearner, AveragingLearner])
def test_concatenation_variant_works_too(cls):
    model = small(cls, slots=False).eval()
    assert model.forward_task(episode()).shape == (20, 5)


def test_slot_embedding_puts_each_pair_in_its_label_block():
    model = small(AveragingLearner).double()
    zs = torch.randn(1, 4, 16, dtype=torch.float64)
    ys = torch.nn.functional.one_hot(torch.tensor([[2, 0, 4, 2]]), 5).double()
    pairs = model.embed_pairs(zs, ys).view(1, 4, 5, 32)
    g = model.pair(zs)
    for s, label in enumerate([2, 0, 4, 2]):
        for k in range(5):
            expected = g[0, s] if k == label else torch.zeros(32, dtype=torch.float64)
            torch.testing.assert_close(pairs[0, s, k], expected)
