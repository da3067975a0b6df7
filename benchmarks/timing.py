"""Paired timing for the benchmarks: implementations take turns on the same inputs in one process.

A benchmark process builds every implementation (same initial weights, same inputs), warms
each up, then times them in rounds: in round ``i`` each implementation takes its step ``i``,
in an order that rotates from round to round, so that a slow moment of a shared machine falls
on all of them alike. Each process gives each implementation's steps per second and its ratio
to the others; the benchmark reports the median and the min-max of both over fresh processes.
Peak memory is measured in one more, untimed, step per implementation: on CUDA the allocator's
peak above what was allocated before the step, on CPU the peak of the bytes autograd holds for
backward (:class:`SavedBytes`).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence

import torch


class SavedBytes:
    """The peak of the bytes autograd holds for backward while active (saved tensors, alive)."""

    def __init__(self) -> None:
        self.live = self.peak = 0
        self.hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)

    class Held:
        def __init__(self, owner: "SavedBytes", tensor: torch.Tensor) -> None:
            self.owner, self.tensor = owner, tensor
            self.nbytes = tensor.numel() * tensor.element_size()
            owner.live += self.nbytes
            owner.peak = max(owner.peak, owner.live)

        def __del__(self) -> None:
            self.owner.live -= self.nbytes

    def pack(self, tensor: torch.Tensor) -> "SavedBytes.Held":
        return SavedBytes.Held(self, tensor)

    @staticmethod
    def unpack(held: "SavedBytes.Held") -> torch.Tensor:
        return held.tensor

    def __enter__(self) -> "SavedBytes":
        self.hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.hooks.__exit__(*exc)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_mib(step: Callable[[], None], device: torch.device) -> float:
    """Peak memory of one call of ``step`` in MiB (CUDA allocator above its start; CPU autograd-held bytes)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    with SavedBytes() as held:
        step()
    return held.peak / 2**20


def _minor_faults() -> int:
    """Fresh pages this process has faulted in so far (0 where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


SETTLED_FAULTS = 2500
"""A warm-up round counts as settled when no step in it faulted more fresh pages than this (10 MiB)."""


def round_robin(steps: Mapping[str, Callable[[int], None]], n_steps: int, warmup: int,
                device: torch.device, settle: int = 0, info: dict | None = None) -> dict[str, float]:
    """Steps per second of each implementation, timed in turns.

    ``steps[name](i)`` runs implementation ``name``'s ``i``-th step (``0 <= i < warmup + n_steps``);
    steps ``0..warmup-1`` are not timed. ``settle``: up to that many more untimed rounds (on the
    warm-up steps again), ending at the first in which no step faulted in more than
    :data:`SETTLED_FAULTS` fresh pages: until the C allocator's heap has grown to what the steps
    need, the implementation with the largest blocks pays for the growth, whichever it is. ``info``,
    when given, receives ``settle_rounds`` and the mean fresh pages per timed step (``faults``).
    """
    names = list(steps)
    for i in range(warmup):
        for name in names:
            steps[name](i)
    rounds = 0
    while rounds < settle:
        rounds += 1
        worst = 0
        for name in names:
            before = _minor_faults()
            steps[name](rounds % max(warmup, 1))
            worst = max(worst, _minor_faults() - before)
        if worst <= SETTLED_FAULTS:
            break
    _sync(device)
    seconds = dict.fromkeys(names, 0.0)
    faults = dict.fromkeys(names, 0)
    for i in range(n_steps):
        for j in range(len(names)):
            name = names[(i + j) % len(names)]
            before = _minor_faults()
            start = time.perf_counter()
            steps[name](warmup + i)
            _sync(device)
            seconds[name] += time.perf_counter() - start
            faults[name] += _minor_faults() - before
    if info is not None:
        info["settle_rounds"] = rounds
        info["faults"] = {name: f / n_steps for name, f in faults.items()}
    return {name: n_steps / s for name, s in seconds.items()}


def repeat_processes(script: str, worker_args: Sequence[str], repeats: int, what: str,
                     env: Mapping[str, str] | None = None,
                     details: list | None = None) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Run ``script --worker ...`` in ``repeats`` fresh processes; their rates, and the largest memory peaks.

    The worker prints one JSON line ``{"rates": {name: rate}, "memory": {name: MiB}}`` last.
    ``env``: variables set in the workers' environment. ``details``, when given, receives each
    worker's whole JSON result.
    """
    runs, memory = [], {}
    for _ in range(repeats):
        out = subprocess.run([sys.executable, script, "--worker", *worker_args], capture_output=True, text=True,
                             env={**os.environ, **(env or {})})
        if out.returncode != 0:
            raise SystemExit(f"{what} failed:\n{out.stderr[-2000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        runs.append(result["rates"])
        if details is not None:
            details.append(result)
        memory = {k: max(v, memory.get(k, 0.0)) for k, v in result["memory"].items()}
    return runs, memory


def summary(runs: Sequence[Mapping[str, float]], memory: Mapping[str, float],
            pairs: Sequence[tuple[str, str]], unit: str) -> list[str]:
    """Lines of the report: per implementation the median rate (min-max over processes) and peak
    memory; per pair ``(a, b)`` the median (min-max) of the paired per-process ratio of a's speed
    over b's, and the ratio of their memory peaks."""
    lines = []
    for name in runs[0]:
        rates = [r[name] for r in runs]
        lines.append(f"  {name:<14} {statistics.median(rates):8.3f} {unit} ({min(rates):.3f}-{max(rates):.3f}) "
                     f"{memory[name]:8.1f} MiB")
    for a, b in pairs:
        ratios = [r[a] / r[b] for r in runs]
        lines.append(f"  {a} over {b}: x{statistics.median(ratios):.2f} speed ({min(ratios):.2f}-{max(ratios):.2f}), "
                     f"x{memory[a] / max(memory[b], 1e-9):.2f} memory")
    return lines
