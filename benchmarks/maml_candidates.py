"""Ways to make MAML's meta-step faster, each measured against what mlcourse does now.

Every candidate computes the same thing as the per-task loop; each is timed in turns with the
loop in one process (``timing.round_robin``) and checked against it first:

- ``grouped``: the tasks of a meta-batch as one network, one grouped convolution per layer
  (``groups=tasks``) with per-task BatchNorm statistics (the tasks' channels side by side, so
  that ``batch_norm`` over ``(images, tasks * channels)`` normalises each task on its own: exact,
  unlike ``vmap`` with BatchNorm). Conv4's forward and backward at the support (5 images) and
  query (75) sizes of a 5-way 1-shot task.
- ``channels-last``: Conv4 with NHWC weights and activations, a whole MAML meta-step.
- ``compile``: ``torch.compile`` of the functional forward and loss at the query size (first
  order only: compiled graphs do not support the double backward of second order). Its
  compilation time is printed apart (about a minute on 2 cores the first time).

    .venv/bin/python benchmarks/maml_candidates.py
    .venv/bin/python benchmarks/maml_candidates.py --only grouped --rounds 16
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import round_robin  # noqa: E402

from mlcourse.backbones import Conv4  # noqa: E402
from mlcourse.data import FontGlot  # noqa: E402
from mlcourse.episodes import draw_episode, labels_of  # noqa: E402
from mlcourse.optimization import MAML  # noqa: E402

CPU = torch.device("cpu")


def grouped_conv4(params: dict, x: torch.Tensor, n_blocks: int = 4) -> torch.Tensor:
    """Conv4 on ``x`` of shape ``(tasks, images, C, H, W)``, every task with its own BatchNorm statistics."""
    tasks, images = x.shape[:2]
    h = x.transpose(0, 1).reshape(images, tasks * x.shape[2], *x.shape[3:])
    for b in range(n_blocks):
        w, bias = params[f"encoder.{b}.0.weight"], params[f"encoder.{b}.0.bias"]
        weight = w.unsqueeze(0).expand(tasks, *w.shape).reshape(tasks * w.shape[0], *w.shape[1:])
        h = F.conv2d(h, weight, bias.repeat(tasks), padding=1, groups=tasks)
        h = F.batch_norm(h, None, None, params[f"encoder.{b}.1.weight"].repeat(tasks),
                         params[f"encoder.{b}.1.bias"].repeat(tasks), training=True)
        h = F.max_pool2d(F.relu(h), 2)
    return h.reshape(images, tasks, -1).transpose(0, 1)  # (tasks, images, features)


def grouped(args) -> None:
    torch.manual_seed(0)
    model = Conv4(track_running_stats=False, channels_last=False)
    params = {k: v.detach() for k, v in model.named_parameters()}
    for tasks, images in ((4, 5), (32, 5), (4, 75), (32, 75)):
        xs = [torch.randn(tasks, images, 1, 28, 28) for _ in range(args.rounds + 2)]

        def loop(i, xs=xs):
            p = {k: v.clone().requires_grad_() for k, v in params.items()}
            sum(functional_call(model, p, (x,)).pow(2).sum() for x in xs[i]).backward()

        def group(i, xs=xs):
            p = {k: v.clone().requires_grad_() for k, v in params.items()}
            grouped_conv4(p, xs[i]).pow(2).sum().backward()

        p = {k: v.clone().requires_grad_() for k, v in params.items()}
        with torch.no_grad():
            ref = torch.stack([functional_call(model, p, (x,)) for x in xs[0]])
            out = grouped_conv4(p, xs[0])
        diff = float((out - ref).abs().max() / ref.abs().max())
        rates = round_robin({"loop": loop, "grouped": group}, args.rounds, 1, CPU)
        print(f"grouped  {tasks:2d} tasks x {images:2d} images: loop {rates['loop']:7.2f}/s, grouped "
              f"{rates['grouped']:7.2f}/s: x{rates['grouped'] / rates['loop']:.2f} (outputs agree to {diff:.1e})")


def channels_last(args) -> None:
    data = FontGlot("background", progress=False)
    labels = labels_of(data)
    rng = np.random.default_rng(0)
    batches = [[draw_episode(data, n_way=5, k_shot=1, n_query=15, rng=rng, labels=labels) for _ in range(4)]
               for _ in range(args.rounds + 1)]
    for order in ("second", "first"):
        steps = {}
        for cl in (False, True):
            torch.manual_seed(0)
            learner = MAML(nn.Sequential(Conv4(track_running_stats=False, channels_last=cl), nn.Linear(64, 5)),
                           inner_lr=0.4, inner_steps=1, first_order=order == "first")
            opt = torch.optim.Adam(learner.parameters(), lr=1e-3)
            steps["NHWC" if cl else "NCHW"] = lambda i, learner=learner, opt=opt: learner.meta_step(batches[i], opt)
        rates = round_robin(steps, args.rounds, 1, CPU)
        print(f"channels-last, {order} order, meta-batch 4: NCHW {rates['NCHW']:.3f} steps/s, NHWC "
              f"{rates['NHWC']:.3f}: x{rates['NHWC'] / rates['NCHW']:.2f}")


def compiled(args) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(Conv4(track_running_stats=False, channels_last=False), nn.Linear(64, 5))
    xs = [torch.randn(75, 1, 28, 28) for _ in range(args.rounds + 2)]
    y = torch.arange(75) % 5

    def loss(params, x):
        return F.cross_entropy(functional_call(model, params, (x,)), y)

    fast = torch.compile(loss)

    def fresh():
        return {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}

    start = time.perf_counter()
    fast(fresh(), xs[0]).backward()
    seconds = time.perf_counter() - start
    p = fresh()
    a = torch.autograd.grad(loss(p, xs[0]), list(p.values()))
    b = torch.autograd.grad(fast(p, xs[0]), list(p.values()))
    # against the largest gradient of all: the conv biases before BatchNorm have an exact gradient of 0
    diff = max(float((u - v).abs().max()) for u, v in zip(a, b)) / max(float(u.abs().max()) for u in a)
    rates = round_robin({"eager": lambda i: loss(fresh(), xs[i]).backward(),
                         "compiled": lambda i: fast(fresh(), xs[i]).backward()}, args.rounds, 1, CPU)
    print(f"compile, Conv4 + linear head on 75 images: eager {rates['eager']:.2f}/s, compiled "
          f"{rates['compiled']:.2f}/s: x{rates['compiled'] / rates['eager']:.2f}; compiling took {seconds:.0f} s; "
          f"the gradients differ by at most {diff:.1e} of the largest one")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8, help="timed rounds per comparison")
    parser.add_argument("--only", nargs="+", choices=["grouped", "channels-last", "compile"],
                        default=["grouped", "channels-last", "compile"], help="the candidates to measure")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, CPU; rates timed in turns")
    for name in args.only:
        {"grouped": grouped, "channels-last": channels_last, "compile": compiled}[name](args)


if __name__ == "__main__":
    main()
