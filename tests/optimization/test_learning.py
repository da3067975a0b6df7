"""The learners actually learn: fixed seeds, small budgets, margins over the baselines."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlcourse.backbones import MLP, Conv4
from mlcourse.data import FontGlot, Sinusoids
from mlcourse.evaluation import evaluate
from mlcourse.optimization import MAML, MetaSGD, Reptile, adaptation_curve, pretrain_on_tasks
from mlcourse.training import meta_train


@pytest.mark.slow
def test_maml_adapts_to_sinusoids_better_than_pretraining():
    sines = Sinusoids(k_shot=10, n_query=10)
    torch.manual_seed(0)
    maml = MAML(MLP([1, 40, 40, 1]), inner_lr=0.01, inner_steps=1, loss_fn=F.mse_loss, task_batching="vmap")
    meta_train(maml, sines, n_steps=1500, meta_batch_size=10, outer_lr=1e-3, device="cpu", progress=False)
    torch.manual_seed(0)
    pretrained = MLP([1, 40, 40, 1])
    pretrain_on_tasks(pretrained, sines, n_steps=1500, meta_batch_size=10, lr=1e-3, progress=False)
    tasks = Sinusoids(k_shot=10, n_query=50).sample_tasks(100, np.random.default_rng(99))
    m = adaptation_curve(maml.model, tasks, inner_steps=5, inner_lr=0.01)
    p = adaptation_curve(pretrained, tasks, inner_steps=5, inner_lr=0.01)
    for s in (1, 5):
        assert m[:, s].mean() < 0.6 * p[:, s].mean(), (s, m[:, s].mean(), p[:, s].mean())
    assert m[:, 5].mean() < m[:, 0].mean(), "adaptation should lower the query error"


def conv_learner(kind):
    torch.manual_seed(0)
    net = nn.Sequential(Conv4(hidden=16, track_running_stats=False, channels_last=False), nn.Linear(16, 5))
    if kind == "maml":
        return MAML(net, inner_lr=0.4)
    if kind == "fomaml":
        return MAML(net, inner_lr=0.4, first_order=True)
    if kind == "metasgd":
        return MetaSGD(net, inner_lr=0.4)
    return Reptile(net, inner_lr=0.1, inner_steps=3)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["maml", "fomaml", "metasgd", "reptile"])
def test_learners_beat_chance_on_fontglot(kind, tiny_root, tiny_eval):
    background = FontGlot("background", preset="tiny", root=tiny_root, progress=False)
    learner = conv_learner(kind)
    extra = dict(outer_lr=1.0, optimizer="sgd", n_query=4) if kind == "reptile" else dict(outer_lr=1e-3, n_query=5)
    meta_train(learner, background, n_steps=60, meta_batch_size=4, n_way=5, k_shot=1, device="cpu", progress=False,
               seed=0, **extra)
    result = evaluate(learner, tiny_eval, n_way=5, k_shot=1, n_query=15, n_episodes=100, seed=3, device="cpu",
                      inner_steps=5 if kind == "reptile" else 3)
    mean, half = result.mean, result.half_width
    assert mean - half > 0.2 + 0.15, f"{kind}: {mean:.3f} ± {half:.3f} (chance is 0.2)"


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    sines = Sinusoids(k_shot=5, n_query=5)

    def fresh():
        torch.manual_seed(0)
        return MAML(MLP([1, 8, 1]), inner_lr=0.01, loss_fn=F.mse_loss)

    kwargs = dict(n_steps=6, meta_batch_size=2, val_every=3, device="cpu", progress=False)
    full = fresh()
    meta_train(full, sines, **kwargs)

    ckpt = tmp_path / "c.pt"
    interrupted = fresh()
    real_step, calls = interrupted.meta_step, []

    def crashing_step(tasks, opt):
        if len(calls) == 4:  # the checkpoint of step 3 is on disk; step 5 never happens
            raise KeyboardInterrupt
        calls.append(1)
        return real_step(tasks, opt)

    interrupted.meta_step = crashing_step
    with pytest.raises(KeyboardInterrupt):
        meta_train(interrupted, sines, checkpoint=ckpt, **kwargs)
    resumed = fresh()
    real_resumed, resumed_calls = resumed.meta_step, []
    resumed.meta_step = lambda tasks, opt: resumed_calls.append(1) or real_resumed(tasks, opt)
    meta_train(resumed, sines, checkpoint=ckpt, **kwargs)
    assert len(resumed_calls) == 3, "the resumed run should continue at step 4, not start again"
    for a, b in zip(full.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_meta_train_errors(tiny_root):
    background = FontGlot("background", preset="tiny", root=tiny_root, progress=False)
    learner = conv_learner("maml")
    with pytest.raises(ValueError, match="examples per class"):
        meta_train(learner, background, n_steps=1, k_shot=30, n_query=30, device="cpu", progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        meta_train(learner, background, n_steps=1, optimizer="lbfgs", device="cpu", progress=False)
