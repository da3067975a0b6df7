"""ProtoNet training speed and peak memory: mlcourse against easyfsl, side by side.

Both train the same Conv4 backbone (same initial weights) with Adam on the identical
FontGlot background episodes; only the prototypical-network code differs. Each
(implementation, setting, device) runs in a fresh process, so peak memory is its own:
the rise of peak RSS over the process's footprint before training on CPU, and
``torch.cuda.max_memory_allocated`` on CUDA.

    .venv/bin/pip install -c constraints.txt easyfsl   # once (or: make bench)
    .venv/bin/python benchmarks/metric.py               # CPU, and CUDA when present

Prints episodes per second and peak memory for each, and the ratios mlcourse / easyfsl.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

SETTINGS = {"5-way 1-shot": (5, 1, 15), "60-way 5-shot": (60, 5, 15)}


def worker(impl: str, setting: str, device_name: str, n_episodes: int, warmup: int, preset: str) -> dict:
    import torch
    import torch.nn.functional as F

    from mlcourse.backbones import Conv4
    from mlcourse.data import FontGlot
    from mlcourse.episodes import EpisodeSampler
    from mlcourse.metric import PrototypicalNetwork

    device = torch.device(device_name)
    n_way, k_shot, n_query = SETTINGS[setting]
    data = FontGlot("background", preset=preset, progress=False)
    sampler = EpisodeSampler(data, n_way, k_shot, n_query, n_tasks=warmup + n_episodes, seed=0)
    episodes = [ep.to(device) for ep in sampler.episodes(data)]
    torch.manual_seed(0)
    backbone = Conv4()
    if impl == "mlcourse":
        model = PrototypicalNetwork(backbone).to(device)

        def step(ep):
            return model.episode_loss(ep)[0]
    else:
        from easyfsl.methods import PrototypicalNetworks

        model = PrototypicalNetworks(backbone).to(device)

        def step(ep):
            model.process_support_set(ep.support_x, ep.support_y)
            return F.cross_entropy(model(ep.query_x), ep.query_y)

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def run(eps):
        for ep in eps:
            loss = step(ep)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    run(episodes[:warmup])
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    start = time.perf_counter()
    run(episodes[warmup:])
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak_mb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before, 0) / 1024
    return {"episodes_per_s": n_episodes / seconds, "peak_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (cpu, plus cuda when present)")
    parser.add_argument("--preset", default="full", choices=["full", "tiny"])
    parser.add_argument("--episodes", type=int, default=0, help="timed episodes (default: 30 CPU / 200 CUDA, "
                                                                 "a third of that at 60 ways)")
    parser.add_argument("--worker", nargs=3, metavar=("IMPL", "SETTING", "DEVICE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        impl, setting, device = args.worker
        print(json.dumps(worker(impl, setting, device, args.episodes, 3, args.preset)))
        return
    import torch

    try:
        import easyfsl  # noqa: F401
    except ImportError:
        sys.exit("easyfsl is not installed: .venv/bin/pip install -c constraints.txt easyfsl")
    devices = ["cpu", "cuda"] if args.device == "auto" and torch.cuda.is_available() else (
        ["cpu"] if args.device == "auto" else [args.device])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}")
    print(f"{'device':<6} {'setting':<14} {'impl':<9} {'episodes/s':>10} {'peak MiB':>9}")
    for device in devices:
        for setting in SETTINGS:
            base = args.episodes or (30 if device == "cpu" else 200)
            n = base if setting.startswith("5-") else max(3, base // 3)
            res = {}
            for impl in ("mlcourse", "easyfsl"):
                out = subprocess.run([sys.executable, __file__, "--worker", impl, setting, device,
                                      "--episodes", str(n), "--preset", args.preset],
                                     capture_output=True, text=True, check=True)
                res[impl] = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{device:<6} {setting:<14} {impl:<9} {res[impl]['episodes_per_s']:>10.2f} "
                      f"{res[impl]['peak_mb']:>9.1f}")
            speed = res["mlcourse"]["episodes_per_s"] / res["easyfsl"]["episodes_per_s"]
            mem = res["mlcourse"]["peak_mb"] / max(res["easyfsl"]["peak_mb"], 1e-9)
            print(f"{device:<6} {setting:<14} ratio mlcourse/easyfsl: speed x{speed:.2f}, peak memory x{mem:.2f}")


if __name__ == "__main__":
    main()
