"""Start-up cost of a grading kernel under each isolation mode, measured side by side.

Each repeat starts a kernel through the launcher, runs one trivial cell and shuts it down,
for every mode this machine offers (``none``; ``namespace`` and ``bwrap`` need root and
bubblewrap). Prints the median and min-max seconds per kernel, and each mode's cost over
``none``.

Usage: ``python benchmarks/grading_sandbox.py [--repeats 5]``
"""
from __future__ import annotations

import argparse
import statistics
import time

import nbformat

from mlcourse.grading.execute import Limits, execute
from mlcourse.grading.sandbox import bwrap_available, isolation_available


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    modes = ["none"] + (["namespace"] if isolation_available()[0] else []) + (["bwrap"] if bwrap_available()[0] else [])
    times = {m: [] for m in modes}
    for _ in range(args.repeats):
        for mode in modes:  # interleaved, so that the machine's load falls on every mode alike
            nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
            start = time.perf_counter()
            run = execute(nb, Limits(isolation=mode, cell_timeout=60))
            times[mode].append(time.perf_counter() - start)
            assert run.replies and run.replies[0]["status"] == "ok", (mode, run.error)
    base = statistics.median(times["none"])
    for mode, t in times.items():
        print(f"{mode:>9}: median {statistics.median(t):.2f} s per kernel (min {min(t):.2f}, max {max(t):.2f}), "
              f"{statistics.median(t) - base:+.2f} s over none")


if __name__ == "__main__":
    main()
