import numpy as np
import pytest
import torch
from torch import nn

from mlcourse.backbones import Conv4
from mlcourse.data import Sinusoids
from mlcourse.evaluation import evaluate
from mlcourse.metric import PrototypicalNetwork
from mlcourse.optimization import MAML
from mlcourse.training import History, TaskStream, make_optimizer, meta_train, train_epoch


@pytest.fixture(scope="module")
def background(tiny_root):
    from mlcourse.data import FontGlot

    return FontGlot("background", preset="tiny", root=tiny_root, progress=False)


def _protonet():
    torch.manual_seed(0)
    return PrototypicalNetwork(Conv4(hidden=16))


def _maml():
    torch.manual_seed(0)
    return MAML(nn.Sequential(Conv4(hidden=8, track_running_stats=False, channels_last=False), nn.Linear(8, 3)),
                inner_lr=0.4)


def _averaging():  # shuffles its support sets in training: seeded per step by the loop
    from mlcourse.blackbox import AveragingLearner

    torch.manual_seed(0)
    return AveragingLearner(n_way=3, hidden=8, encoder=Conv4(hidden=8))


LEARNERS = {"protonet": _protonet, "maml": _maml, "averaging": _averaging}


def _recording(learner, log, crash_at=None):
    """Wrap ``learner.meta_step`` to log the classes of each step's tasks and to crash at one call."""
    real = learner.meta_step

    def meta_step(tasks, opt):
        if crash_at is not None and len(log) + 1 == crash_at:
            raise KeyboardInterrupt
        log.append([t.classes.tolist() if hasattr(t, "classes") else t.support_y.sum().item() for t in tasks])
        return real(tasks, opt)

    learner.meta_step = meta_step
    return learner


@pytest.mark.parametrize("kind", LEARNERS)
def test_resume_after_interruption_equals_uninterrupted(kind, background, tiny_eval, tmp_path):
    """N steps in one go == N/2 steps, a stop (the checkpoint of step N/2 on disk), and a resume to N."""
    kwargs = dict(n_steps=8, meta_batch_size=2, n_way=3, k_shot=1, n_query=2, val_set=tiny_eval, val_every=2,
                  val_episodes=3, seed=0, device="cpu", progress=False)
    make = LEARNERS[kind]
    straight_tasks = []
    straight = _recording(make(), straight_tasks)
    h1 = meta_train(straight, background, **kwargs)
    assert len(straight_tasks) == 8

    first_tasks = []
    interrupted = _recording(make(), first_tasks, crash_at=5)  # step 5 never happens
    with pytest.raises(KeyboardInterrupt):
        meta_train(interrupted, background, checkpoint=tmp_path / "ckpt.pt", **kwargs)
    assert len(first_tasks) == 4
    resumed_tasks = []
    resumed = _recording(make(), resumed_tasks)
    h2 = meta_train(resumed, background, checkpoint=tmp_path / "ckpt.pt", **kwargs)
    assert len(resumed_tasks) == 4, "the resumed run should continue at step 5, not start again"
    # the stream is seeded per step: the resumed run sees the tasks of the uninterrupted run
    assert first_tasks + resumed_tasks == straight_tasks
    assert h2.val_step == h1.val_step == [2, 4, 6, 8]
    assert h2.val_acc == h1.val_acc and h2.best_step == h1.best_step and h2.step == h1.step
    assert h2.loss == pytest.approx(h1.loss, rel=1e-5)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_resumed_history_equals_uninterrupted_history(tmp_path):
    """Also when the checkpoints (every 5 steps) fall between the points where the loss is logged (every 2)."""
    import torch.nn.functional as F

    from mlcourse.backbones import MLP

    def fresh():
        torch.manual_seed(0)
        return MAML(MLP([1, 8, 1]), inner_lr=0.01, loss_fn=F.mse_loss)

    sines = Sinusoids(k_shot=3, n_query=3)
    kwargs = dict(n_steps=40, meta_batch_size=2, val_every=5, device="cpu", progress=False)
    h1 = meta_train(fresh(), sines, **kwargs)
    interrupted = _recording(fresh(), [], crash_at=8)  # the checkpoint of step 5 is on disk
    with pytest.raises(KeyboardInterrupt):
        meta_train(interrupted, sines, checkpoint=tmp_path / "c.pt", **kwargs)
    h2 = meta_train(fresh(), sines, checkpoint=tmp_path / "c.pt", **kwargs)
    assert h2.step == h1.step
    assert h2.loss == pytest.approx(h1.loss, rel=1e-6)
    assert {2, 4, 5, 6, 40} <= set(h1.step), "the loss is logged at every checkpoint too"


def test_checkpoint_of_other_settings_is_refused(background, tmp_path):
    model = _protonet()
    meta_train(model, background, n_steps=5, n_way=3, k_shot=1, n_query=2, val_every=5, checkpoint=tmp_path / "c.pt",
               device="cpu", progress=False)
    assert (tmp_path / "c.pt").exists()
    with pytest.raises(ValueError, match="delete it or pass another checkpoint path"):
        meta_train(model, background, n_steps=5, n_way=5, k_shot=1, n_query=2, checkpoint=tmp_path / "c.pt",
                   device="cpu", progress=False)


def test_best_validation_weights_are_kept(background, tiny_eval):
    model = _protonet()
    h = meta_train(model, background, n_steps=20, n_way=3, k_shot=1, n_query=2, val_set=tiny_eval, val_every=5,
                   val_episodes=20, device="cpu", progress=False)
    assert h.val_step == [5, 10, 15, 20] and len(h.val_acc) == len(h.val_ci) == 4
    assert h.best_val_acc == max(h.val_acc) and h.best_step == h.val_step[h.val_acc.index(max(h.val_acc))]
    # validation uses the episodes of seed + 1: the weights loaded back score the best accuracy again
    result = evaluate(model, tiny_eval, n_way=3, k_shot=1, n_query=2, n_episodes=20, seed=1, device="cpu")
    assert result.mean == pytest.approx(h.best_val_acc)


def test_history_columns_are_logged_and_read_as_attributes(background):
    h = meta_train(_protonet(), background, n_steps=4, n_way=3, k_shot=1, n_query=2, device="cpu", progress=False)
    assert h.step == [1, 2, 3, 4] and len(h.loss) == len(h.acc) == 4
    assert all(np.isfinite(h.loss)) and all(0 <= a <= 1 for a in h.acc)
    assert h.seconds > 0
    empty = History()
    empty.log(epoch=1, loss=0.5)
    empty.log(epoch=2, loss=0.25)
    assert empty.epoch == [1, 2] and empty.loss == [0.5, 0.25] and empty.columns == {"epoch": [1, 2],
                                                                                      "loss": [0.5, 0.25]}
    with pytest.raises(AttributeError, match="no column 'val_acc'"):
        empty.val_acc


def test_meta_train_checks_its_arguments(background):
    with pytest.raises(TypeError, match="lacks meta_step, predict"):
        meta_train(nn.Linear(2, 2), background, n_steps=1, device="cpu", progress=False)
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match="n_steps"):
            meta_train(_protonet(), background, n_steps=bad, device="cpu", progress=False)
    with pytest.raises(ValueError, match="meta_batch_size"):
        meta_train(_protonet(), background, n_steps=1, meta_batch_size=0, device="cpu", progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer("lbfgs", _protonet().parameters(), 1e-3)


def _classes(batch):
    return [(t.classes.tolist(), t.support_x.sum().item(), t.query_x.sum().item()) for t in batch]


def test_task_stream_batch_depends_only_on_seed_and_step(background):
    def stream(seed=0):
        return TaskStream(background, meta_batch_size=3, n_way=5, k_shot=[1, 2], n_query=2, seed=seed)

    in_order = stream()
    expected = {t: _classes(in_order.batch(t)) for t in range(6)}
    other = stream()
    for t in (5, 2, 2, 0, 4, 1, 3):  # any order, with repeats, and other batches drawn in between
        assert _classes(other.batch(t)) == expected[t]
        other.batch(100 + t)
    assert len({str(b) for b in expected.values()}) == 6, "steps draw different tasks"
    assert _classes(stream(seed=1).batch(0)) != expected[0], "seeds draw different tasks"
    shots = {stream().batch(t)[0].k_shot for t in range(20)}
    assert shots == {1, 2}
    assert all(len({task.k_shot for task in stream().batch(t)}) == 1 for t in range(5)), "one shot count per batch"


def test_task_stream_of_a_task_distribution():
    sines = Sinusoids(k_shot=5, n_query=5)
    a, b = TaskStream(sines, meta_batch_size=4, seed=3), TaskStream(sines, meta_batch_size=4, seed=3)
    b.batch(0), b.batch(7)
    for t in (2, 1):
        for x, y in zip(a.batch(t), b.batch(t)):
            torch.testing.assert_close(x.support_x, y.support_x, rtol=0, atol=0)
            torch.testing.assert_close(x.query_y, y.query_y, rtol=0, atol=0)
    assert len(a.batch(0)) == 4
    with pytest.raises(ValueError, match="meta_batch_size"):
        TaskStream(sines, meta_batch_size=0)


def test_task_stream_checks_the_request(background):
    with pytest.raises(ValueError, match="examples per class"):
        TaskStream(background, meta_batch_size=1, k_shot=30, n_query=30)
    for bad in ([], [0, 1], 2.5):
        with pytest.raises(ValueError, match="k_shot"):
            TaskStream(background, meta_batch_size=1, k_shot=bad)


def test_train_epoch_returns_the_example_weighted_mean_loss():
    w = nn.Parameter(torch.zeros(()))
    opt = torch.optim.SGD([w], lr=0.0)  # no movement: each batch's loss is known in advance
    batches = [(torch.full((3,), 1.0),), (torch.full((1,), 5.0),), (torch.full((4,), 2.0),)]
    # a batch's loss is its mean value; weighted by batch size: (3 * 1 + 1 * 5 + 4 * 2) / 8 = 2
    mean = train_epoch(opt, batches, lambda x: (x + w).mean())
    assert mean == pytest.approx(2.0)
    assert mean != pytest.approx(np.mean([1.0, 5.0, 2.0]))  # not the mean over batches


def test_train_epoch_takes_one_optimizer_step_per_batch():
    w = nn.Parameter(torch.zeros(()))
    opt = torch.optim.SGD([w], lr=0.1)
    x = torch.ones(4)
    loaders = [(x[:2], x[:2]), (x[2:], x[2:]), (x, x)]
    train_epoch(opt, loaders, lambda xb, yb: ((w - xb) ** 2).mean())
    # plain SGD on (w - 1)^2 from 0: w <- w + 0.2 (1 - w), three times; gradients do not accumulate
    expected = 0.0
    for _ in range(3):
        expected += 0.2 * (1 - expected)
    assert w.item() == pytest.approx(expected)


def test_train_epoch_refuses_an_empty_pass():
    w = nn.Parameter(torch.zeros(()))
    with pytest.raises(ValueError, match="no batches"):
        train_epoch(torch.optim.SGD([w], lr=0.1), [], lambda x: w * x.sum())
