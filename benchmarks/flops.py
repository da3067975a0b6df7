"""How close to the machine: Conv4's achieved FLOP/s against this device's measured matmul peak.

The peak is the best of ``--repeats`` timings of a float32 matrix product (``--n`` square; on CPU
with the threads PyTorch uses). Conv4 (the course's backbone, 64 channels, BatchNorm) runs
forward and backward on the image batches of the benchmarks (a 5-way 1-shot episode with 15
queries: 80 images of 28x28; a 60-way 5-shot one: 1,200; a MAML meta-batch of 32 such 5-way
tasks seen at once: 2,560). Its FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode``
(convolutions and matrix products; the elementwise work of BatchNorm and ReLU is not counted, so
the fraction is a lower bound on how busy the cores are).

    .venv/bin/python benchmarks/flops.py                  # CPU
    .venv/bin/python benchmarks/flops.py --device cuda
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from mlcourse.backbones import Conv4

BATCHES = {"5-way 1-shot episode (80 images)": 80, "60-way 5-shot episode (1200)": 1200,
           "MAML meta-batch of 32 tasks (2560)": 2560}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_seconds(fn, device: torch.device, repeats: int) -> float:
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=2048, help="size of the square matrices of the peak")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    a, b = torch.randn(args.n, args.n, device=device), torch.randn(args.n, args.n, device=device)
    peak = 2 * args.n ** 3 / best_seconds(lambda: a @ b, device, args.repeats)
    print(f"{device} ({torch.get_num_threads()} threads): float32 matmul peak {peak / 1e9:.1f} GFLOP/s "
          f"({args.n}x{args.n}, best of {args.repeats})")
    torch.manual_seed(0)
    for channels_last in (True, False):
        model = Conv4(channels_last=channels_last).to(device)
        for name, batch in BATCHES.items():
            x = torch.randn(batch, 1, 28, 28, device=device)
            if channels_last:
                x = x.to(memory_format=torch.channels_last)

            def step():
                model.zero_grad(set_to_none=True)
                model(x).sum().backward()

            with FlopCounterMode(display=False) as counter:
                step()
            flops = counter.get_total_flops()
            seconds = best_seconds(step, device, args.repeats)
            print(f"  Conv4{' channels-last' if channels_last else ''}, {name}: {flops / 1e9:.2f} GFLOP forward+"
                  f"backward in {1e3 * seconds:.1f} ms = {flops / seconds / 1e9:.1f} GFLOP/s, "
                  f"{100 * flops / seconds / peak:.0f}% of the matmul peak")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
