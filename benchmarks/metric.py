"""ProtoNet training speed and peak memory: mlcourse against easyfsl, side by side.

Both train the same Conv4 backbone (same initial weights) with Adam on the identical
FontGlot background episodes; only the prototypical-network code differs. Each (setting,
device, repeat) is a fresh process that builds both and times them in turns on the same
episodes (``timing.round_robin``: 3 warm-up episodes each, then ``--episodes`` rounds in
which each takes one episode, in an order that rotates). The table gives each one's median
episodes per second over ``--repeats`` processes (min-max), the median and min-max of
the speed ratios (paired: both from the same process), and the peak memory of
one more, untimed, episode: ``torch.cuda`` allocator's peak on CUDA, the bytes autograd
holds for backward on CPU.

    .venv/bin/pip install -c constraints.txt easyfsl   # once (or: make bench)
    .venv/bin/python benchmarks/metric.py               # CPU, and CUDA when present
    .venv/bin/python benchmarks/metric.py --device cpu --repeats 5 --settings "60-way 5-shot"

mlcourse embeds support and query images in one batch by default (BatchNorm statistics over
both, as the prototypical networks' reference code does); easyfsl embeds the support set, then
the queries (two batches). ``mlcourse-apart`` is mlcourse with ``embed_jointly = False``: the
same computation as easyfsl's, so its ratio to easyfsl compares like with like, and its ratio
to ``mlcourse`` is what the joint batch costs or saves.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import repeat_processes, summary  # noqa: E402

IMPLS = ("mlcourse", "mlcourse-apart", "easyfsl")
PAIRS = [("mlcourse", "easyfsl"), ("mlcourse-apart", "easyfsl"), ("mlcourse", "mlcourse-apart")]
SETTINGS = {"5-way 1-shot": (5, 1, 15), "60-way 5-shot": (60, 5, 15)}


def worker(setting: str, device_name: str, n_episodes: int, warmup: int, preset: str, settle: int) -> dict:
    """One process: both implementations on the same episodes, timed in turns (see timing.py)."""
    import torch
    import torch.nn.functional as F
    from easyfsl.methods import PrototypicalNetworks

    from mlcourse.backbones import Conv4
    from mlcourse.data import FontGlot
    from mlcourse.episodes import EpisodeSampler
    from mlcourse.metric import PrototypicalNetwork
    from timing import peak_mib, round_robin

    device = torch.device(device_name)
    n_way, k_shot, n_query = SETTINGS[setting]
    data = FontGlot("background", preset=preset, progress=False)
    sampler = EpisodeSampler(data, n_way, k_shot, n_query, n_tasks=warmup + n_episodes + 1, seed=0)
    episodes = [ep.to(device) for ep in sampler.episodes(data)]

    def losses(impl):
        torch.manual_seed(0)
        backbone = Conv4()
        if impl.startswith("mlcourse"):
            model = PrototypicalNetwork(backbone).to(device)
            model.embed_jointly = impl == "mlcourse"
            return model, lambda ep: model.episode_loss(ep)[0]
        model = PrototypicalNetworks(backbone).to(device)

        def loss(ep):
            model.process_support_set(ep.support_x, ep.support_y)
            return F.cross_entropy(model(ep.query_x), ep.query_y)
        return model, loss

    steps = {}
    for impl in IMPLS:
        model, loss = losses(impl)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()

        def step(i, loss=loss, optimizer=optimizer):
            value = loss(episodes[i])
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
        steps[impl] = step
    info: dict = {}
    rates = round_robin(steps, n_episodes, warmup, device, settle=settle, info=info)
    memory = {impl: peak_mib(lambda: step(len(episodes) - 1), device) for impl, step in steps.items()}
    return {"rates": rates, "memory": memory, **info}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (cpu, plus cuda when present)")
    parser.add_argument("--preset", default="full", choices=["full", "tiny"])
    parser.add_argument("--episodes", type=int, default=0, help="timed episodes each (default: 30 CPU / 200 "
                                                                 "CUDA, a third of that at 60 ways), rounded "
                                                                 "up to a multiple of the implementations")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per setting (each times both)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed episodes each before the timed ones")
    parser.add_argument("--settle", type=int, default=12, help="then up to this many untimed rounds more, until "
                                                               "a round in which the heap did not grow (0: none)")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--worker", nargs=2, metavar=("SETTING", "DEVICE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        setting, device = args.worker
        print(json.dumps(worker(setting, device, args.episodes, args.warmup, args.preset, args.settle)))
        return
    import torch

    try:
        import easyfsl  # noqa: F401
    except ImportError:
        sys.exit("easyfsl is not installed: .venv/bin/pip install -c constraints.txt easyfsl")
    devices = ["cpu", "cuda"] if args.device == "auto" and torch.cuda.is_available() else (
        ["cpu"] if args.device == "auto" else [args.device])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}; median episodes/s of "
          f"{args.repeats} processes (min-max), peak MiB, and the median (min-max) of the speed ratios, paired "
          "within each process")
    for device in devices:
        for setting in args.settings:
            base = args.episodes or (30 if device == "cpu" else 200)
            n = base if setting.startswith("5-") else max(3, base // 3)
            n = -(-n // len(IMPLS)) * len(IMPLS)  # every implementation in every position equally often
            details: list = []
            runs, memory = repeat_processes(__file__, [setting, device, "--episodes", str(n), "--preset", args.preset,
                                                       "--warmup", str(args.warmup), "--settle", str(args.settle)],
                                            args.repeats, f"{setting} on {device}", details=details)
            settled = [d["settle_rounds"] for d in details]
            print(f"{device} {setting}, {n} timed episodes each, after {args.warmup} warm-up episodes and "
                  f"{min(settled)}-{max(settled)} rounds more until the heap stopped growing:")
            print("\n".join(summary(runs, memory, PAIRS, "episodes/s")))
            faults = {impl: max(d["faults"][impl] for d in details) for impl in IMPLS}
            print("  fresh pages faulted per timed episode (most of any process): "
                  + ", ".join(f"{impl} {f:.0f}" for impl, f in faults.items()), flush=True)


if __name__ == "__main__":
    main()
