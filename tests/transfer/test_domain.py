"""Domain adaptation: the gradient reversal layer, the alignment losses, CORAL, and the digit domains."""
import numpy as np
import pytest
import torch

from mlcourse.data.digits import font_digits, handwritten_digits, to_optdigits, upsample
from mlcourse.transfer.domain import (DomainAdaptationNet, GradientReversal, coral_loss, coral_transform,
                                      dann_lambda, grad_reverse, mmd_loss, train_domain_adaptation)


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0, 2.5])
def test_gradient_reversal_is_identity_forward_and_negates_backward(lam):
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, dtype=torch.float64)
    y = grad_reverse(x, lam)
    torch.testing.assert_close(y, x, rtol=0, atol=0)
    (g,) = torch.autograd.grad((w * y).sum(), x)
    torch.testing.assert_close(g, -lam * w, rtol=0, atol=0)
    layer = GradientReversal(lam)
    (g2,) = torch.autograd.grad((w * layer(x)).sum(), x)
    torch.testing.assert_close(g2, -lam * w, rtol=0, atol=0)


def test_gradient_reversal_inside_a_network_flips_the_features_gradient():
    torch.manual_seed(0)
    f = torch.nn.Linear(5, 4).double()
    d = torch.nn.Linear(4, 1).double()
    x = torch.randn(6, 5, dtype=torch.float64)
    plain = torch.autograd.grad(d(f(x)).sum(), f.weight)[0]
    reversed_ = torch.autograd.grad(d(grad_reverse(f(x), 0.5)).sum(), f.weight)[0]
    torch.testing.assert_close(reversed_, -0.5 * plain)


def test_dann_schedule():
    assert dann_lambda(0.0) == 0.0
    assert 0.99 < dann_lambda(1.0) < 1.0
    assert all(dann_lambda(a) < dann_lambda(b) for a, b in [(0.1, 0.2), (0.2, 0.5)])


def test_alignment_losses_vanish_for_the_same_sample_and_grow_with_the_shift():
    torch.manual_seed(0)
    a = torch.randn(64, 5, dtype=torch.float64)
    assert coral_loss(a, a.clone()) < 1e-15
    assert mmd_loss(a, a.clone()).abs() < 1e-12
    b = torch.randn(64, 5, dtype=torch.float64)
    small, big = mmd_loss(a, b + 0.2), mmd_loss(a, b + 2.0)
    assert 0 < small < big
    assert coral_loss(a, 3 * b) > coral_loss(a, b)
    # CORAL against its definition: ||C_s - C_t||_F^2 / (4 d^2), unbiased covariances
    cs, ct = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
    assert coral_loss(a, b).item() == pytest.approx(((cs - ct) ** 2).sum() / (4 * 25), rel=1e-10)
    with pytest.raises(ValueError, match="shapes"):
        coral_loss(a, torch.randn(10, 4))
    with pytest.raises(ValueError, match="at least two"):
        mmd_loss(a[:1], b)


def test_coral_transform_gives_the_source_the_target_covariance():
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(4000, 3)) * [1.0, 3.0, 0.5]
    mix = rng.normal(size=(3, 3))
    xt = rng.normal(size=(4000, 3)) @ mix
    out = coral_transform(xs, xt, eps=1e-9)
    np.testing.assert_allclose(np.cov(out, rowvar=False), np.cov(xt, rowvar=False), rtol=1e-6, atol=1e-6)


def test_to_optdigits_matches_the_format_of_the_handwritten_digits():
    img = np.zeros((40, 40), dtype=np.float32)
    img[4:36, 16:24] = 1.0  # a vertical bar: fills the height, centred
    out = to_optdigits(img)
    assert out.shape == (8, 8) and out.min() >= 0 and out.max() <= 16
    assert out[:, 3:5].min() > 0 and out[:, 0].max() == 0
    with pytest.raises(ValueError, match="no ink"):
        to_optdigits(np.zeros((8, 8)))
    X, y = handwritten_digits()
    assert X.shape == (1797, 64) and X.max() == 16 and set(np.unique(y)) == set(range(10))
    assert upsample(X[:3]).shape == (3, 28, 28)


@pytest.fixture(scope="module")
def digits():
    Xs, ys = font_digits(200, seed=0, cache=False)
    Xt, yt = handwritten_digits()
    return Xs, ys, Xt, yt


def test_font_digits_are_in_the_same_format_and_balanced(digits):
    Xs, ys, Xt, _ = digits
    assert Xs.shape == (2000, 64) and Xs.dtype == np.float32
    assert Xs.min() == 0 and Xs.max() == 16 and np.all(Xs == np.round(Xs))
    assert np.bincount(ys).tolist() == [200] * 10
    # similar amount of ink as the handwritten digits: the shift is in shape, not in scale
    assert abs(Xs.mean() - Xt.mean()) < 1.0
    with pytest.raises(ValueError, match="at least the number of fonts"):
        font_digits(5)


def test_domain_adaptation_runs_and_errors(digits):
    Xs, ys, Xt, yt = digits
    xs, xt = torch.tensor(Xs[:256] / 16), torch.tensor(Xt[:256] / 16)
    ys_t, yt_t = torch.tensor(ys[:256]), torch.tensor(yt[:256])
    held_out = (torch.tensor(Xt[256:400] / 16).float(), torch.tensor(yt[256:400]))
    for method in ("source_only", "dann", "coral", "mmd", "target"):
        hist = train_domain_adaptation(DomainAdaptationNet().float(), method, xs.float(), ys_t, xt.float(), yt_t,
                                       epochs=1, eval_data=held_out, progress=False)
        assert len(hist.target_acc) == 1 and 0 <= hist.target_acc[0] <= 1
        assert hist.epoch == [1] and 0 <= hist.source_acc[0] <= 1 and np.isfinite(hist.class_loss[0])
        assert (hist.align_loss[0] == 0) == (method in ("source_only", "target"))
    hist = train_domain_adaptation(DomainAdaptationNet().float(), "dann", xs.float(), ys_t, xt.float(), epochs=1,
                                   progress=False)
    assert np.isnan(hist.target_acc[0]), "without yt there is no target accuracy to report"
    with pytest.raises(ValueError, match="unknown method"):
        train_domain_adaptation(DomainAdaptationNet(), "magic", xs, ys_t, xt)
    with pytest.raises(ValueError, match="pass yt"):
        train_domain_adaptation(DomainAdaptationNet(), "target", xs, ys_t, xt)


def test_the_target_upper_bound_is_measured_on_held_out_target_images(digits):
    """A bound that trains on its own test images (training accuracy) is refused; a held-out one is accepted."""
    Xs, ys, Xt, yt = digits
    xs, xt, ys_t, yt_t = (torch.tensor(a[:300]).float() for a in (Xs / 16, Xt / 16, ys, yt))
    ys_t, yt_t = ys_t.long(), yt_t.long()
    with pytest.raises(ValueError, match="pass eval_data"):
        train_domain_adaptation(DomainAdaptationNet().float(), "target", xs, ys_t, xt, yt_t, epochs=1, progress=False)
    with pytest.raises(ValueError, match="also training images"):
        train_domain_adaptation(DomainAdaptationNet().float(), "target", xs, ys_t, xt, yt_t, epochs=1,
                                eval_data=(xt[:50], yt_t[:50]), progress=False)
    held_out = (torch.tensor(Xt[300:450] / 16).float(), torch.tensor(yt[300:450]).long())
    hist = train_domain_adaptation(DomainAdaptationNet().float(), "target", xs, ys_t, xt, yt_t, epochs=1,
                                   eval_data=held_out, progress=False)
    assert 0 <= hist.target_acc[0] <= 1


@pytest.mark.slow
def test_dann_beats_source_only_on_the_handwritten_digits():
    """The bar: on each fixed seed DANN ends above the source-only network on the target, by 1.5 points on average.

    One thread, so that the runs are the same on every machine (the order of floating-point
    sums changes with the number of threads, and with it the trained networks).
    """
    Xs, ys = font_digits(1000, seed=0, cache=False)
    Xt, yt = handwritten_digits()
    xs, xt = torch.tensor(Xs / 16, dtype=torch.float32), torch.tensor(Xt / 16, dtype=torch.float32)
    ys_t, yt_t = torch.tensor(ys), torch.tensor(yt)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gains = []
        for seed in (0, 1, 2):
            acc = {}
            for method, weight in (("source_only", 1.0), ("dann", 0.5)):
                torch.manual_seed(seed)
                hist = train_domain_adaptation(DomainAdaptationNet(), method, xs, ys_t, xt, yt_t, epochs=20,
                                               weight=weight, seed=seed, progress=False)
                acc[method] = hist.target_acc[-1]
            assert acc["source_only"] < 0.7, acc  # the shift is real
            gains.append(acc["dann"] - acc["source_only"])
    finally:
        torch.set_num_threads(threads)
    assert min(gains) > 0 and np.mean(gains) > 0.015, gains
