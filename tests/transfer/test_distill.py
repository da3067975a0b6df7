"""Knowledge distillation: the soft term against closed forms, errors, and that the trainer runs."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlcourse.training import History
from mlcourse.transfer import distillation_loss, random_shift, soft_target_loss, train_distilled


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
    assert isinstance(hist, History) and hist.epoch == list(range(1, 31))
    assert all(p.requires_grad is False for p in teacher.parameters()) and not teacher.training


def test_cached_teacher_logits_give_the_same_training_as_asking_the_teacher_each_batch():
    torch.manual_seed(0)
    x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    teacher = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    runs = []
    for augment in (None, lambda xb, gen: xb):  # an identity augmentation makes the trainer ask the teacher
        torch.manual_seed(1)
        student = nn.Linear(6, 3)
        hist = train_distilled(student, teacher, x, y, epochs=3, batch_size=8, progress=False, augment=augment)
        runs.append((hist.loss, student.weight.detach().clone()))
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-5)
    torch.testing.assert_close(runs[0][1], runs[1][1], rtol=1e-4, atol=1e-5)


def test_random_shift_moves_images_without_changing_them():
    x = torch.zeros(5, 1, 9, 9)
    x[:, :, 4, 4] = 1.0
    out = random_shift(x, torch.Generator().manual_seed(0), max_shift=2)
    assert out.shape == x.shape and torch.all(out.sum((1, 2, 3)) == 1)
    rows, cols = torch.nonzero(out[:, 0], as_tuple=True)[1:]
    assert rows.min() >= 2 and rows.max() <= 6 and cols.min() >= 2 and cols.max() <= 6
    with pytest.raises(ValueError, match="B, C, H, W"):
        random_shift(torch.zeros(3, 9, 9), torch.Generator())


@pytest.mark.slow
def test_distilled_student_beats_the_student_from_scratch():
    """The bar: on each fixed seed, distillation from a bigger teacher beats training on the labels.

    The setting of lecture 7: 100 FontGlot classes, 10 images per class to learn from and 10 to
    test on; a Conv4 with 64 filters teaches a Conv4 with 16 (13 times fewer parameters). One
    thread, so that the runs are the same on every machine.
    """
    from mlcourse.backbones import Conv4
    from mlcourse.data import FontGlot
    from mlcourse.evaluation import accuracy
    from mlcourse.transfer import TransferNet, fine_tune

    data = FontGlot("background", progress=False).subset_classes(100, seed=0)
    x, y, x_test, y_test = data.tensors(n_train=10, seed=0)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        teacher = TransferNet(Conv4(hidden=64), 64, 100)
        fine_tune(teacher, x, y, epochs=20, lr=3e-3, progress=False)
        gains = []
        for seed in (0, 1):
            acc = []
            for t in (None, teacher):
                torch.manual_seed(seed)
                student = TransferNet(Conv4(hidden=16), 16, 100)
                train_distilled(student, t, x, y, epochs=60, temperature=4.0, alpha=0.9, seed=seed, progress=False)
                acc.append(accuracy(student, x_test, y_test))
            gains.append(acc[1] - acc[0])
    finally:
        torch.set_num_threads(threads)
    assert accuracy(teacher, x_test, y_test) > 0.75
    assert min(gains) > 0.1, gains
