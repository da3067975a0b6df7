"""What a meta-step costs in memory: the bytes autograd holds for the backward pass.

:func:`autograd_peak_bytes` counts, on any device, the tensors that autograd saves for
backward while a function runs and reports the peak of what is alive at once (each storage
counted once; parameters included). It is the part of memory that second-order MAML makes
grow with the number of inner steps; the benchmark measures the full CUDA peak as well.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["autograd_peak_bytes"]


class _Tracker:
    def __init__(self) -> None:
        self.refs: dict[int, int] = {}
        self.sizes: dict[int, int] = {}
        self.live = 0
        self.peak = 0

    def add(self, key: int, nbytes: int) -> None:
        if key not in self.refs:
            self.refs[key], self.sizes[key] = 0, nbytes
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        self.refs[key] += 1

    def remove(self, key: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            self.live -= self.sizes.pop(key)
            del self.refs[key]


class _Held:
    __slots__ = ("tensor", "key", "tracker")

    def __init__(self, tensor: torch.Tensor, tracker: _Tracker) -> None:
        self.tensor, self.tracker = tensor, tracker
        storage = tensor.untyped_storage()
        self.key = storage.data_ptr()
        tracker.add(self.key, storage.nbytes())

    def __del__(self) -> None:
        self.tracker.remove(self.key)


def autograd_peak_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn()``; return ``(its result, peak bytes of tensors saved for backward alive at once)``."""
    tracker = _Tracker()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: _Held(t, tracker), lambda h: h.tensor):
        result = fn()
    return result, tracker.peak

