"""Meta-training steps per second on 1 and on N processes (torchrun), the same run otherwise.

MAML (second order, 1 inner step) on Conv4 with batch-statistics BatchNorm, 5-way 1-shot FontGlot
episodes with 15 queries, a meta-batch of 32 tasks split over the processes by
:mod:`mlcourse.distributed`. Each configuration runs in fresh processes; the first
``--warmup`` steps are not timed. Threads per process: ``--threads`` (default: the machine's
cores divided by the processes, so that every run uses the same cores).

    .venv/bin/python benchmarks/distributed.py --procs 1 2 --steps 12
    .venv/bin/python benchmarks/distributed.py --device cuda --procs 1 2   # one GPU per process
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

SCRIPT = """
import json, time, torch
from torch import nn
from mlcourse.backbones import Conv4
from mlcourse.data import FontGlot
from mlcourse.distributed import init_from_env, is_main, world
from mlcourse.optimization import MAML
from mlcourse.training import meta_train

init_from_env({device!r})
torch.set_num_threads({threads})
data = FontGlot("background", progress=False)
torch.manual_seed(0)
learner = MAML(nn.Sequential(Conv4(track_running_stats=False), nn.Linear(64, 5)), inner_lr=0.4, inner_steps=1)
settings = dict(meta_batch_size={meta_batch}, n_way=5, k_shot=1, n_query=15, device={device!r}, progress=False)
meta_train(learner, data, n_steps={warmup}, **settings)
if world()[1] > 1:
    torch.distributed.barrier()
if {device!r} == "cuda":
    torch.cuda.synchronize()
start = time.perf_counter()
meta_train(learner, data, n_steps={steps}, seed=1, **settings)
if {device!r} == "cuda":
    torch.cuda.synchronize()
seconds = time.perf_counter() - start
if is_main():
    open({out!r}, "w").write(json.dumps({{"seconds": seconds, "procs": world()[1]}}))
"""


def run(procs: int, args, folder: Path) -> float:
    out = folder / f"result-{procs}.json"
    threads = args.threads or max(1, (os.cpu_count() or 1) // procs)
    script = folder / f"bench-{procs}.py"
    script.write_text(textwrap.dedent(SCRIPT).format(device=args.device, threads=threads, meta_batch=args.meta_batch,
                                                     warmup=args.warmup, steps=args.steps, out=str(out)))
    cmd = [sys.executable, str(script)] if procs == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs), str(script)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if done.returncode != 0:
        raise SystemExit(f"{procs} process(es) failed:\n{done.stderr[-2000:]}")
    return args.steps / json.loads(out.read_text())["seconds"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument("--threads", type=int, help="threads per process (default: cores / processes)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rates = {p: [run(p, args, Path(tmp)) for _ in range(args.repeats)] for p in args.procs}
    base = sorted(rates[args.procs[0]])[len(rates[args.procs[0]]) // 2]
    print(f"MAML second order, meta-batch {args.meta_batch}, {args.steps} timed steps, device {args.device}, "
          f"{os.cpu_count()} cores")
    for p, r in rates.items():
        med = sorted(r)[len(r) // 2]
        print(f"  {p} process(es): {med:.3f} steps/s (min {min(r):.3f}, max {max(r):.3f}), x{med / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
