"""Meta-training on 2 CPU processes (torchrun, gloo) equals one process on the same tasks, and resumes in one."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from mlcourse.data import FontGlot
from mlcourse.distributed import share
from mlcourse.optimization import MAML
from mlcourse.training import meta_train

# SGD: Adam would turn the float noise of gradients that are zero in exact arithmetic (a convolution's bias
# before BatchNorm) into steps of its full learning rate, in either run
SETTINGS = dict(meta_batch_size=5, n_way=3, k_shot=1, n_query=2, outer_lr=0.1, optimizer="sgd", val_every=4, seed=3,
                progress=False)


def _maml():  # no BatchNorm: over the few images of a 3-way 1-shot support set it amplifies float noise
    torch.manual_seed(0)
    return MAML(nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 32), nn.ReLU(), nn.Linear(32, 3)),
                inner_lr=0.4, inner_steps=2)


SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_distributed import SETTINGS, _maml, _stopping
from mlcourse.data import FontGlot
from mlcourse.distributed import init_from_env, is_main, world
from mlcourse.training import meta_train

assert init_from_env("cpu") and world()[1] == 2
torch.set_num_threads(1)
data = FontGlot("background", preset="tiny", root={root!r}, progress=False)
learner = _stopping(_maml(), {stop})
try:
    meta_train(learner, data, n_steps={steps}, checkpoint={checkpoint!r}, device="cpu", **SETTINGS)
except KeyboardInterrupt:
    pass
flat = torch.cat([p.detach().reshape(-1) for p in learner.parameters()])
gathered = [torch.zeros_like(flat) for _ in range(2)]
torch.distributed.all_gather(gathered, flat)
if is_main():
    torch.save({{"state": learner.state_dict(), "same_on_every_rank": bool(torch.equal(gathered[0], gathered[1]))}},
               {out!r})
torch.distributed.destroy_process_group()
"""


def _stopping(learner, stop_at):
    """``learner``, whose ``meta_step`` raises ``KeyboardInterrupt`` at its ``stop_at``-th call (a stopped run)."""
    real, calls = learner.meta_step, []

    def meta_step(tasks, opt):
        calls.append(1)
        if len(calls) == stop_at:
            raise KeyboardInterrupt
        return real(tasks, opt)

    learner.meta_step = meta_step
    return learner


@pytest.fixture(scope="module")
def background(tiny_root):
    return FontGlot("background", preset="tiny", root=tiny_root, progress=False)


def test_shares_cover_the_meta_batch_once():
    for n in range(2, 9):
        for size in range(1, n + 1):
            parts = [share(n, r, size) for r in range(size)]
            assert [i for p in parts for i in range(p.start, p.stop)] == list(range(n))
            assert max(p.stop - p.start for p in parts) - min(p.stop - p.start for p in parts) <= 1
    with pytest.raises(ValueError, match="at least 4"):
        share(3, 0, 4)


def test_two_gloo_processes_equal_one_and_their_checkpoint_resumes_in_one(background, tiny_root, tmp_path):
    steps, saved = 8, 4  # the distributed run stops after its checkpoint of step 4
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT).format(
        tests=os.path.dirname(__file__), root=str(tiny_root), steps=steps, stop=saved + 1,
        checkpoint=str(tmp_path / "dist.pt"), out=str(tmp_path / "result.pt")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    dist = torch.load(tmp_path / "result.pt")
    assert dist["same_on_every_rank"], "the ranks' weights drifted apart"

    torch.set_num_threads(1)
    one = _stopping(_maml(), saved + 1)  # one process, the same tasks, stopped at the same step
    with pytest.raises(KeyboardInterrupt):
        meta_train(one, background, n_steps=steps, device="cpu", **SETTINGS)
    for name, value in one.state_dict().items():
        torch.testing.assert_close(dist["state"][name], value, rtol=1e-4, atol=2e-5, msg=name)  # float32 sums reordered

    checkpoint = torch.load(tmp_path / "dist.pt", weights_only=False)
    assert checkpoint["step"] == saved
    resumed = _maml()  # the distributed run's checkpoint resumed by one process, to the end
    h_resumed = meta_train(resumed, background, n_steps=steps, checkpoint=tmp_path / "dist.pt", device="cpu",
                           **SETTINGS)
    straight = _maml()
    h_straight = meta_train(straight, background, n_steps=steps, device="cpu", **SETTINGS)
    assert h_resumed.loss == pytest.approx(h_straight.loss, rel=1e-4)  # the ranks' logged losses are the batch's
    for (name, a), b in zip(resumed.state_dict().items(), straight.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-5, msg=name)
