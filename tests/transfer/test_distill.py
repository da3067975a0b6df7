"""Knowledge distillation: the soft term against closed forms, errors, and that the trainer runs."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlcourse.transfer import distillation_loss, soft_target_loss, train_distilled


def test_soft_term_is_zero_when_logits_match_and_positive_otherwise():
    z = torch.randn(6, 5, dtype=torch.float64)
    assert soft_target_loss(z, z.clone(), 3.0).abs() < 1e-12
    # a constant shift of the logits does not change the softmax
    assert soft_target_loss(z + 2.5, z, 3.0).abs() < 1e-12
    assert soft_target_loss(torch.randn(6, 5, dtype=torch.float64), z, 3.0) > 0


def test_soft_term_gradient_matches_the_closed_form():
    torch.manual_seed(0)
    s = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    t = torch.randn(4, 7, dtype=torch.float64)
    for temp in (1.0, 2.0, 8.0):
        (g,) = torch.autograd.grad(soft_target_loss(s, t, temp), s)
        # d/ds [T^2 KL(p_t || p_s)] = T^2 * (p_s - p_t) / T / B = T (p_s - p_t) / B
        expected = temp * (torch.softmax(s / temp, 1) - torch.softmax(t / temp, 1)) / 4
        torch.testing.assert_close(g, expected.detach(), rtol=1e-10, atol=1e-12)


def test_soft_term_value_matches_the_kl_formula():
    s, t, temp = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64), 2.5
    pt, ps = torch.softmax(t / temp, 1), torch.softmax(s / temp, 1)
    expected = temp ** 2 * (pt * (pt.log() - ps.log())).sum(1).mean()
    torch.testing.assert_close(soft_target_loss(s, t, temp), expected)


def test_mixture_and_its_limits():
    s, t, y = torch.randn(5, 3), torch.randn(5, 3), torch.randint(0, 3, (5,))
    torch.testing.assert_close(distillation_loss(s, t, y, alpha=0.0), F.cross_entropy(s, y))
    torch.testing.assert_close(distillation_loss(s, t, y, temperature=2.0, alpha=1.0), soft_target_loss(s, t, 2.0))
    mixed = distillation_loss(s, t, y, temperature=2.0, alpha=0.3)
    torch.testing.assert_close(mixed, 0.3 * soft_target_loss(s, t, 2.0) + 0.7 * F.cross_entropy(s, y))


def test_teacher_gets_no_gradient():
    s = torch.randn(2, 3, requires_grad=True)
    t = torch.randn(2, 3, requires_grad=True)
    soft_target_loss(s, t).backward()
    assert t.grad is None and s.grad is not None


def test_clear_errors():
    s, t, y = torch.randn(5, 3), torch.randn(5, 3), torch.randint(0, 3, (5,))
    with pytest.raises(ValueError, match="shape"):
        soft_target_loss(s, torch.randn(5, 4))
    with pytest.raises(ValueError, match="temperature"):
        soft_target_loss(s, t, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(s, t, y, alpha=1.5)
    with pytest.raises(ValueError, match="targets"):
        distillation_loss(s, t, y[:3])


def test_student_moves_towards_the_teacher():
    torch.manual_seed(0)
    x = torch.randn(512, 8)
    teacher = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 4))
    y = teacher(x).argmax(1).detach()
    student = nn.Linear(8, 4)
    before = soft_target_loss(student(x), teacher(x)).item()
    hist = train_distilled(student, teacher, x, y, epochs=30, lr=1e-2, alpha=1.0, device="cpu", progress=False)
    after = soft_target_loss(student(x), teacher(x)).item()
    assert after < 0.5 * before and hist.loss[-1] < hist.loss[0]
    assert all(p.requires_grad is False for p in teacher.parameters()) and not teacher.training
