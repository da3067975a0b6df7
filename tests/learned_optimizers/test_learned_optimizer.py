"""The learned LSTM optimiser: preprocessing, meta-gradients, save/load, resume, and that it learns."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlcourse.learned_optimizers import (DigitsMLP, LSTMOptimizer, QuadraticProblems, meta_train_optimizer,
                                         preprocess_gradients, run_learned, run_torch_optimizer, tune_learning_rate,
                                         unrolled_meta_loss)
from mlcourse.training import History


def test_preprocessing_matches_the_closed_form():
    p = 10.0
    g = torch.tensor([3.0, -0.5, 1e-3, -1e-3, 1e-6, -1e-7, 0.0, math.exp(-p)])
    out = preprocess_gradients(g, p)
    assert out.shape == (8, 2)
    for gi, (a, b) in zip(g.tolist(), out.tolist()):
        if abs(gi) >= math.exp(-p):
            assert a == pytest.approx(math.log(abs(gi)) / p) and b == math.copysign(1.0, gi)
        else:
            assert a == -1.0 and b == pytest.approx(math.exp(p) * gi)
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="positive"):
        preprocess_gradients(g, 0)


def test_preprocessing_is_continuous_in_the_first_coordinate_at_the_threshold():
    p, t = 10.0, math.exp(-10.0)
    out = preprocess_gradients(torch.tensor([t * (1 + 1e-6), t * (1 - 1e-6)], dtype=torch.float64), p)
    assert out[0, 0].item() == pytest.approx(-1.0, abs=1e-6) and out[1, 0].item() == -1.0
    assert out[0, 1].item() == 1.0 and out[1, 1].item() == pytest.approx(1.0, abs=1e-5)


def test_quadratic_losses_and_minimum():
    probs = QuadraticProblems(4, dim=3, generator=torch.Generator().manual_seed(0))
    theta = torch.randn(12)
    t = theta.view(4, 3)
    expected = torch.stack([(probs.W[b] @ t[b] - probs.y[b]).pow(2).sum() for b in range(4)])
    torch.testing.assert_close(probs.losses(theta), expected)
    assert (probs.minimum() < 1e-6).all()  # square W: the optimum interpolates y


def test_digits_mlp_matches_a_plain_network():
    probs = DigitsMLP(3, hidden=7, generator=torch.Generator().manual_seed(0))
    w1, b1, w2, b2 = (t[1] for t in probs._unpack(probs.theta0))
    net = nn.Sequential(nn.Linear(64, 7), nn.Sigmoid(), nn.Linear(7, 10))
    with torch.no_grad():
        net[0].weight.copy_(w1.T), net[0].bias.copy_(b1), net[2].weight.copy_(w2.T), net[2].bias.copy_(b2)
    gen = torch.Generator().manual_seed(probs.batch_seed + 5)
    idx = torch.randint(0, len(probs.y), (probs.batch_size,), generator=gen)
    expected = F.cross_entropy(net(probs.x[idx]), probs.y[idx])
    torch.testing.assert_close(probs.losses(probs.theta0, step=5)[1], expected)
    assert probs.losses(probs.theta0, 5).shape == (3,)
    with pytest.raises(ValueError, match="activation"):
        DigitsMLP(2, activation="tanh")


def test_batched_hand_designed_optimiser_equals_one_problem_at_a_time():
    probs = QuadraticProblems(3, generator=torch.Generator().manual_seed(1))
    batch, _ = run_torch_optimizer("Adam", probs, lr=0.1, steps=20)
    for b in range(3):
        single = QuadraticProblems(1, generator=torch.Generator().manual_seed(1))
        single.W, single.y, single.theta0 = probs.W[b:b + 1], probs.y[b:b + 1], probs.theta0.view(3, -1)[b]
        alone, _ = run_torch_optimizer("Adam", single, lr=0.1, steps=20)
        np.testing.assert_allclose(alone[:, 0], batch[:, b], rtol=1e-5)
    with pytest.raises(ValueError, match="unknown optimiser"):
        run_torch_optimizer("Adagrad", probs, lr=0.1)


def test_meta_gradient_reaches_every_lstm_parameter_and_is_finite():
    torch.manual_seed(0)
    net = LSTMOptimizer()
    probs = QuadraticProblems(8, generator=torch.Generator().manual_seed(0))
    meta_loss, theta, state = unrolled_meta_loss(net, probs, probs.theta0, net.initial_state(80), 0, unroll=5)
    meta_loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert theta.shape == probs.theta0.shape and state[0].shape == (2, 80, 20)


def test_meta_gradient_drops_second_derivatives():
    """With unroll 2, the meta-gradient equals the one computed with the gradients explicitly detached."""
    torch.manual_seed(0)
    net = LSTMOptimizer().double()
    probs = QuadraticProblems(2, dim=3, generator=torch.Generator().manual_seed(0))
    probs.W, probs.y, probs.theta0 = probs.W.double(), probs.y.double(), probs.theta0.double()
    state = tuple(s.double() for s in net.initial_state(6))
    loss, _, _ = unrolled_meta_loss(net, probs, probs.theta0, state, 0, unroll=2)
    ours = torch.autograd.grad(loss, list(net.parameters()))
    # by hand: theta1 = theta0 + u(g0); theta2 = theta1 + u(g1) with g1 computed at a detached theta1
    theta0 = probs.theta0.clone().requires_grad_(True)
    g0 = torch.autograd.grad(probs.losses(theta0).sum(), theta0)[0]
    u0, s = net(g0, state)
    theta1 = theta0.detach() + u0
    t1 = theta1.detach().requires_grad_(True)
    g1 = torch.autograd.grad(probs.losses(t1).sum(), t1)[0]
    u1, _ = net(g1, s)
    theta2 = theta1 + u1
    ref = torch.autograd.grad(probs.losses(theta1).mean() + probs.losses(theta2).mean(), list(net.parameters()))
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_save_and_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    net = LSTMOptimizer(hidden=8)
    net.save(tmp_path / "opt.pt")
    again = LSTMOptimizer.load(tmp_path / "opt.pt")
    g = torch.randn(30)
    a, _ = net(g, net.initial_state(30))
    b, _ = again(g, again.initial_state(30))
    torch.testing.assert_close(a, b)
    torch.save({"x": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="LSTMOptimizer.save"):
        LSTMOptimizer.load(tmp_path / "other.pt")


def test_bad_state_and_horizon_give_clear_errors():
    net = LSTMOptimizer()
    with pytest.raises(ValueError, match="initial_state"):
        net(torch.randn(10), net.initial_state(5))
    with pytest.raises(ValueError, match="multiple of unroll"):
        meta_train_optimizer(net, lambda g: QuadraticProblems(2, generator=g), n_iterations=1, horizon=30, unroll=20)


def test_resume_equals_uninterrupted(tmp_path):
    def make(g):
        return QuadraticProblems(4, generator=g)

    kwargs = dict(n_iterations=4, horizon=10, unroll=5, progress=False)
    torch.manual_seed(0)
    full = LSTMOptimizer(hidden=6)
    h_full = meta_train_optimizer(full, make, **kwargs)
    calls = []

    def crashing(g):  # iterations 1 and 2 finish (and are saved), iteration 3 never happens
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return make(g)

    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        meta_train_optimizer(LSTMOptimizer(hidden=6), crashing, checkpoint=tmp_path / "r.pt", **kwargs)
    torch.manual_seed(1)  # the resumed run must not depend on the global seed
    resumed, resumed_calls = LSTMOptimizer(hidden=6), []
    h_res = meta_train_optimizer(resumed, lambda g: resumed_calls.append(1) or make(g), checkpoint=tmp_path / "r.pt",
                                 **kwargs)
    assert len(resumed_calls) == 2, "the resumed run should continue at iteration 3"
    assert isinstance(h_res, History) and h_res.iteration == h_full.iteration == [1, 2, 3, 4]
    assert h_res.meta_loss == pytest.approx(h_full.meta_loss, rel=1e-6)
    for a, b in zip(resumed.parameters(), full.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.slow
def test_lstm_optimizer_beats_untuned_sgd_on_held_out_quadratics():
    torch.manual_seed(0)
    net = LSTMOptimizer()
    meta_train_optimizer(net, lambda g: QuadraticProblems(32, generator=g), n_iterations=40, horizon=100, unroll=20,
                         lr=1e-2, progress=False, seed=0)
    test = QuadraticProblems(64, generator=torch.Generator().manual_seed(12345))
    learned, _ = run_learned(net, test, steps=100)
    sgd, _ = run_torch_optimizer("SGD", test, lr=0.01, steps=100)
    # mean log-loss over the trajectory and the final loss, both well below SGD's
    assert np.log(learned).mean() < np.log(sgd).mean() - 0.5, (np.log(learned).mean(), np.log(sgd).mean())
    assert np.median(learned[-1]) < 0.5 * np.median(sgd[-1])


def test_tuning_picks_a_finite_rate():
    probs = QuadraticProblems(16, generator=torch.Generator().manual_seed(3))
    best, scores = tune_learning_rate("SGD", probs, grid=(1e-3, 1e-2, 10.0), steps=30)
    assert best == 1e-2 and scores[10.0] == float("inf")
