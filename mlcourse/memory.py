"""How the process's C allocator treats the memory PyTorch frees on CPU.

PyTorch allocates every CPU tensor with the C library's ``malloc`` and frees it as soon as it
is no longer used; a training step allocates and frees the same large activations and
gradients (megabytes each) again and again. With glibc's defaults, blocks over the mmap
threshold (128 KiB at first, adapting up to 32 MiB) are mapped and unmapped on every
allocation, and free memory at the top of the heap beyond the trim threshold (twice the mmap
threshold) is given back to the operating system. The next step then touches fresh pages: one page fault per 4 KiB, each zeroed by
the kernel, which on the course's CPU benchmarks took a quarter to a half of a MAML meta-step
(``benchmarks/allocator.py`` measures it).

:func:`keep_freed_memory` tells glibc to keep what it frees for reuse: every block comes from
the heap (none is mapped on its own, however large), and the heap is never trimmed. The
process's resident memory then stays at its peak until it exits instead of falling back between
steps, and its peak can be higher than without it: 2.5-3.1 GB instead of 2.0 GB when training
ProtoNet at 60 ways 5 shots, whose steps were 1.3-1.8 times as fast (without it each step faulted
in 1.3 GB of fresh pages). Trimming the heap once 1 GiB at its top was free was not enough
there: after a backward more than that can be free, the heap shrank, and the next step faulted
it in again (in a 30-episode run with that threshold, 4 steps after the first faulted in 36,000-58,000
fresh pages each; never trimming, 3 steps faulted in 11,000-91,000, all while the heap grew to
its final size, which was 260 MB smaller). It is applied when
``mlcourse`` is imported, unless the environment variable ``MLCOURSE_KEEP_FREED_MEMORY`` is
``0`` (or ``false``, ``no``, ``off``); it does nothing where the C library is not glibc (macOS,
musl, Windows), nor where another allocator is preloaded in its place. Grading kernels run with
it off (:mod:`mlcourse.grading.sandbox`), so that their memory limit means what it did.
"""
from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["keep_freed_memory", "TRIM_THRESHOLD"]

TRIM_THRESHOLD = -1
"""Free memory at the top of the heap beyond this is given back to the operating system."""

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's <malloc.h>
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc keep freed blocks for reuse (see the module's text); ``True`` if it was applied.

    Idempotent. Returns ``False``, changing nothing, where the C library is not glibc.
    """
    global _applied
    if _applied is None:
        _applied = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(None)  # the C library the interpreter runs on
                libc.gnu_get_libc_version  # glibc only
                mallopt = libc.mallopt
            except (OSError, AttributeError):
                return False
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            # no block mapped on its own (glibc still maps one when the heap cannot grow)
            results = [mallopt(_M_MMAP_MAX, 0), mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)]
            _applied = all(results)
    return _applied


def _apply_on_import() -> None:
    if os.environ.get("MLCOURSE_KEEP_FREED_MEMORY", "1").strip().lower() not in ("0", "false", "no", "off"):
        keep_freed_memory()
