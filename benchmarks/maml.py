"""MAML meta-steps per second and memory: mlcourse against higher, torchopt and a learn2learn-style loop.

Four implementations of the same computation, side by side in one run:

- ``mlcourse``: :class:`mlcourse.optimization.MAML` (``torch.func.functional_call``, no module copies);
- ``higher``: ``higher.innerloop_ctx`` with a differentiable SGD (first order: the query
  gradient at the fast weights is added to the initial weights' gradient, as FOMAML does);
- ``torchopt``: ``torchopt.MetaSGD`` with ``extract_state_dict``/``recover_state_dict`` (first
  order: ``torchopt.stop_gradient`` on the fast weights, then the same gradient copy);
- ``l2l-loop``: what learn2learn's ``MAML.clone()``/``adapt()`` do, written out here (learn2learn
  does not build on Python 3.11): a differentiable clone per task, ``torch.autograd.grad`` with
  ``create_graph=not first_order``, the updates written into the clone.

Same Conv4 (BatchNorm with batch statistics), same initial weights, same FontGlot episodes
(5-way 1-shot, 15 queries, 28x28), inner learning rate 0.4, Adam outer step. Each (configuration,
device, repeat) is a fresh process that builds all four and times them in turns on the same
meta-batches (``timing.round_robin``: ``--warmup`` steps each, then ``--steps`` rounds in which
every implementation takes one step, in an order that rotates). The table gives each one's
median steps per second over ``--repeats`` processes with the min-max, the median and min-max
of mlcourse's speed over each reference's (paired: both from the same process), and the peak
memory of one more, untimed, step: on CUDA the allocator's peak above its start; on CPU the peak
of the bytes autograd holds for backward (saved tensors).

    make bench                                   # installs easyfsl, higher, torchopt; runs both benchmarks
    .venv/bin/python benchmarks/maml.py --repeats 5 --steps 8
    .venv/bin/python benchmarks/maml.py --device cuda --steps 20
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys

CONFIGS = [(order, mb, inner) for order in ("second", "first") for mb in (4, 32) for inner in (1, 5)]
IMPLS = ("mlcourse", "higher", "torchopt", "l2l-loop")


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import repeat_processes, summary  # noqa: E402


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


def reference_step(impl, model, opt, tasks, inner, lr, first_order):
    """One meta-step of ``impl`` (a reference library or the written-out learn2learn loop)."""
    import torch
    import torch.nn.functional as F

    opt.zero_grad(set_to_none=True)
    params = list(model.parameters())
    for t in tasks:
        if impl == "l2l-loop":
            learner = clone_module(model)
            for _ in range(inner):
                loss = F.cross_entropy(learner(t.support_x), t.support_y)
                grads = torch.autograd.grad(loss, list(learner.parameters()), create_graph=not first_order)
                update_module(learner, grads, lr)
            (F.cross_entropy(learner(t.query_x), t.query_y) / len(tasks)).backward()
        elif impl == "higher":
            import higher

            inner_opt = torch.optim.SGD(model.parameters(), lr=lr)
            with higher.innerloop_ctx(model, inner_opt, copy_initial_weights=False,
                                      track_higher_grads=not first_order) as (fmodel, diffopt):
                for _ in range(inner):
                    diffopt.step(F.cross_entropy(fmodel(t.support_x), t.support_y))
                query = F.cross_entropy(fmodel(t.query_x), t.query_y) / len(tasks)
                if first_order:
                    fast = list(fmodel.parameters())
                    for p, g in zip(params, torch.autograd.grad(query, fast)):
                        p.grad = g if p.grad is None else p.grad + g
                else:
                    query.backward()
        elif impl == "torchopt":
            import torchopt

            net_state = torchopt.extract_state_dict(model)
            inner_opt = torchopt.MetaSGD(model, lr=lr)
            for _ in range(inner):
                inner_opt.step(F.cross_entropy(model(t.support_x), t.support_y))
                if first_order:
                    torchopt.stop_gradient(model)
            query = F.cross_entropy(model(t.query_x), t.query_y) / len(tasks)
            if first_order:
                grads = torch.autograd.grad(query, list(model.parameters()))
                torchopt.recover_state_dict(model, net_state)
                for p, g in zip(model.parameters(), grads):
                    p.grad = g if p.grad is None else p.grad + g
            else:
                query.backward()
                torchopt.recover_state_dict(model, net_state)
        else:
            raise ValueError(impl)
    opt.step()


def worker(order, meta_batch, inner, device_name, n_steps, warmup, impls):
    """One process: every implementation in ``impls`` on the same tasks, timed in turns (see timing.py)."""
    import numpy as np
    import torch
    from torch import nn

    from mlcourse.backbones import Conv4
    from mlcourse.data import FontGlot
    from mlcourse.episodes import draw_episode, labels_of
    from mlcourse.optimization import MAML
    from timing import peak_mib, round_robin

    device = torch.device(device_name)
    data = FontGlot("background", progress=False)
    labels = labels_of(data)
    rng = np.random.default_rng(0)
    batches = [[draw_episode(data, n_way=5, k_shot=1, n_query=15, rng=rng, labels=labels).to(device)
                for _ in range(meta_batch)]
               for _ in range(warmup + n_steps + 1)]
    first_order = order == "first"
    lr = 0.4
    steps = {}
    for impl in impls:
        torch.manual_seed(0)
        model = nn.Sequential(Conv4(track_running_stats=False, channels_last=False), nn.Linear(64, 5)).to(device)
        if impl == "mlcourse":
            learner = MAML(model, inner_lr=lr, inner_steps=inner, first_order=first_order)
            opt = torch.optim.Adam(learner.parameters(), lr=1e-3)
            steps[impl] = lambda i, learner=learner, opt=opt: learner.meta_step(batches[i], opt)
        else:
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            steps[impl] = lambda i, impl=impl, model=model, opt=opt: reference_step(
                impl, model, opt, batches[i], inner, lr, first_order)
    rates = round_robin(steps, n_steps, warmup, device)
    memory = {impl: peak_mib(lambda: step(len(batches) - 1), device) for impl, step in steps.items()}
    return {"rates": rates, "memory": memory}


def check_agreement(impls) -> None:
    """Every implementation's meta-gradient on the same 2 tasks from the same weights: they must agree."""
    import numpy as np
    import torch
    from torch import nn

    from mlcourse.backbones import Conv4
    from mlcourse.data import FontGlot
    from mlcourse.episodes import draw_episode, labels_of
    from mlcourse.optimization import MAML

    class Frozen(torch.optim.SGD):  # keeps the gradient, takes no step
        def step(self, closure=None):
            return None

    data = FontGlot("background", progress=False)
    rng = np.random.default_rng(1)
    tasks = [draw_episode(data, n_way=5, k_shot=1, n_query=15, rng=rng, labels=labels_of(data)) for _ in range(2)]
    for order in ("second", "first"):
        for inner in (1, 2):
            grads = {}
            for impl in impls:
                torch.manual_seed(0)
                model = nn.Sequential(Conv4(hidden=16, track_running_stats=False, channels_last=False), nn.Linear(16, 5))
                if impl == "mlcourse":
                    learner = MAML(model, inner_lr=0.4, inner_steps=inner, first_order=order == "first")
                    learner.meta_step(tasks, Frozen(learner.parameters(), lr=0))
                else:
                    reference_step(impl, model, Frozen(model.parameters(), lr=0), tasks, inner, 0.4, order == "first")
                grads[impl] = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
            ref = grads[impls[0]]
            worst = {k: float((v - ref).abs().max() / ref.abs().max()) for k, v in grads.items()}
            if max(worst.values()) > 1e-4:
                raise SystemExit(f"the implementations disagree ({order} order, {inner} inner steps): {worst}")
    print(f"the meta-gradients of {', '.join(impls)} agree (max relative difference under 1e-4, both orders, "
          "1 and 2 inner steps)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (cpu, plus cuda when present)")
    parser.add_argument("--steps", type=int, default=0, help="timed meta-steps per process (default: 8 CPU / 30 "
                                                              "CUDA; a quarter of that at meta-batch 32 on CPU), rounded up "
                                                              "to a multiple of the implementations")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per setting (each times all)")
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    parser.add_argument("--configs", nargs="+", help="only these, as order/meta-batch/inner, e.g. second/4/1")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        order, mb, inner, device = args.worker
        print(json.dumps(worker(order, int(mb), int(inner), device, args.steps, 1 if device == "cpu" else 3,
                                args.impls)))
        return
    import torch

    devices = ["cpu", "cuda"] if args.device == "auto" and torch.cuda.is_available() else (
        ["cpu"] if args.device == "auto" else [args.device])
    configs = [c for c in CONFIGS if not args.configs or f"{c[0]}/{c[1]}/{c[2]}" in args.configs]
    check_agreement(["mlcourse", *[i for i in args.impls if i != "mlcourse"]])
    refs = [i for i in args.impls if i != "mlcourse"]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}; median steps/s of "
          f"{args.repeats} processes (min-max), peak MiB, and the median (min-max) of mlcourse's speed over "
          "each reference's, paired within each process")
    for device in devices:
        for order, mb, inner in configs:
            n = args.steps or (8 if device == "cpu" else 30)
            if device == "cpu" and mb == 32:
                n = max(2, n // 4)
            n = -(-n // len(args.impls)) * len(args.impls)  # every implementation in every position equally often
            runs, memory = repeat_processes(__file__, [order, str(mb), str(inner), device, "--steps", str(n),
                                                       "--impls", "mlcourse", *refs], args.repeats,
                                            f"{order}/{mb}/{inner} on {device}")
            print(f"{device} {order} order, meta-batch {mb}, {inner} inner step(s), {n} timed steps each:")
            print("\n".join(summary(runs, memory, [("mlcourse", r) for r in refs], "steps/s")), flush=True)


if __name__ == "__main__":
    main()
