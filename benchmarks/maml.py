"""MAML meta-steps per second and peak memory: mlcourse against a learn2learn-style reference.

The reference does what learn2learn's ``MAML.clone()`` / ``adapt()`` do, written out here
(learn2learn does not build on Python 3.11): for each task it clones the module (parameters
become non-leaf copies), takes ``torch.autograd.grad(..., create_graph=not first_order)``
and writes the updated tensors into the clone's ``_parameters``, then backpropagates that
task's query loss. mlcourse runs the same computation through ``torch.func.functional_call``
with no module copies. Same Conv4 (BatchNorm with batch statistics), same initial weights,
same FontGlot episodes (5-way 1-shot, 15 queries, 28x28), Adam outer step.

Each (implementation, configuration, device) runs in a fresh process, so the peak memory is
its own (CUDA: ``max_memory_allocated`` above the model; CPU: rise of peak RSS).

    .venv/bin/python benchmarks/maml.py                   # CPU, and CUDA when present
    .venv/bin/python benchmarks/maml.py --device cuda --steps 20
"""
from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import time

CONFIGS = [(order, mb, inner) for order in ("second", "first") for mb in (4, 32) for inner in (1, 5)]


def clone_module(module):
    """learn2learn's clone_module in short: a deep copy whose parameters are differentiable clones."""
    clone = copy.deepcopy(module)
    originals = dict(module.named_parameters())
    for name, sub in clone.named_modules():
        for pname in list(sub._parameters):
            full = f"{name}.{pname}" if name else pname
            sub._parameters[pname] = originals[full].clone()
    return clone


def update_module(module, grads, lr):
    for (name, p), g in zip(list(module.named_parameters()), grads):
        owner_name, _, pname = name.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        owner._parameters[pname] = p - lr * g


def worker(impl, order, meta_batch, inner, device_name, n_steps, warmup):
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    from mlcourse.backbones import Conv4
    from mlcourse.data import FontGlot
    from mlcourse.episodes import draw_episode, labels_of
    from mlcourse.optimization import MAML

    device = torch.device(device_name)
    data = FontGlot("background", progress=False)
    labels = labels_of(data)
    rng = np.random.default_rng(0)
    batches = [[draw_episode(data, n_way=5, k_shot=1, n_query=15, rng=rng, labels=labels).to(device)
                for _ in range(meta_batch)]
               for _ in range(warmup + n_steps)]
    torch.manual_seed(0)
    model = nn.Sequential(Conv4(track_running_stats=False, channels_last=False), nn.Linear(64, 5)).to(device)
    first_order = order == "first"
    lr = 0.4
    if impl == "mlcourse":
        learner = MAML(model, inner_lr=lr, inner_steps=inner, first_order=first_order)
        opt = torch.optim.Adam(learner.parameters(), lr=1e-3)

        def step(tasks):
            learner.meta_step(tasks, opt)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(tasks):
            opt.zero_grad(set_to_none=True)
            for t in tasks:
                learner = clone_module(model)
                for _ in range(inner):
                    loss = F.cross_entropy(learner(t.support_x), t.support_y)
                    grads = torch.autograd.grad(loss, list(learner.parameters()), create_graph=not first_order)
                    update_module(learner, grads, lr)
                (F.cross_entropy(learner(t.query_x), t.query_y) / len(tasks)).backward()
            opt.step()

    for tasks in batches[:warmup]:
        step(tasks)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    for tasks in batches[warmup:]:
        step(tasks)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss, 0) / 1024
    return {"steps_per_s": n_steps / seconds, "peak_mb": peak}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (cpu, plus cuda when present)")
    parser.add_argument("--steps", type=int, default=0, help="timed meta-steps (default: 4 CPU / 30 CUDA; "
                                                              "a quarter of that at meta-batch 32 on CPU)")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        impl, order, mb, inner, device = args.worker
        print(json.dumps(worker(impl, order, int(mb), int(inner), device, args.steps, 1 if device == "cpu" else 3)))
        return
    import torch

    devices = ["cpu", "cuda"] if args.device == "auto" and torch.cuda.is_available() else (
        ["cpu"] if args.device == "auto" else [args.device])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}")
    print(f"{'device':<6} {'order':<6} {'batch':>5} {'inner':>5} {'mlcourse st/s':>13} {'ref st/s':>9} "
          f"{'speed':>6} {'mlc MiB':>8} {'ref MiB':>8} {'mem':>6}")
    for device in devices:
        for order, mb, inner in CONFIGS:
            n = args.steps or (4 if device == "cpu" else 30)
            if device == "cpu" and mb == 32:
                n = max(1, n // 4)
            res = {}
            for impl in ("mlcourse", "reference"):
                out = subprocess.run([sys.executable, __file__, "--worker", impl, order, str(mb), str(inner), device,
                                      "--steps", str(n)], capture_output=True, text=True, check=True)
                res[impl] = json.loads(out.stdout.strip().splitlines()[-1])
            a, b = res["mlcourse"], res["reference"]
            print(f"{device:<6} {order:<6} {mb:>5} {inner:>5} {a['steps_per_s']:>13.3f} {b['steps_per_s']:>9.3f} "
                  f"x{a['steps_per_s'] / b['steps_per_s']:>5.2f} {a['peak_mb']:>8.1f} {b['peak_mb']:>8.1f} "
                  f"x{a['peak_mb'] / max(b['peak_mb'], 1e-9):>5.2f}", flush=True)


if __name__ == "__main__":
    main()
