"""What keeping freed CPU memory for reuse (``mlcourse.memory``) is worth, side by side.

``import mlcourse`` makes glibc keep the blocks PyTorch frees, instead of giving them back to
the operating system and faulting fresh pages in at the next step. The setting is for the
whole process, so it speeds every library in it: in ``benchmarks/maml.py`` and
``benchmarks/metric.py`` the references run with it too, and their ratios compare the code
alone. This benchmark measures the setting itself: the same workers of those two benchmarks
(every implementation, timed in turns), in fresh processes with ``MLCOURSE_KEEP_FREED_MEMORY``
``1`` and ``0``, one after the other (``--repeats`` pairs, the order alternating). It prints
each implementation's median rate both ways and the median (min-max) over pairs of the ratio.

    .venv/bin/python benchmarks/allocator.py                 # CPU
    .venv/bin/python benchmarks/allocator.py --repeats 5 --only maml
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from timing import repeat_processes  # noqa: E402

CASES = {
    "maml second/4/1": ("maml.py", ["second", "4", "1", "cpu", "--steps", "6"]),
    "maml first/4/5": ("maml.py", ["first", "4", "5", "cpu", "--steps", "6"]),
    "protonet 5-way 1-shot": ("metric.py", ["5-way 1-shot", "cpu", "--episodes", "20"]),
    "protonet 60-way 5-shot": ("metric.py", ["60-way 5-shot", "cpu", "--episodes", "6"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="pairs of fresh processes per case")
    parser.add_argument("--only", choices=["maml", "protonet"], help="only the cases of one benchmark")
    args = parser.parse_args()
    print("median rate over processes with the setting (kept) and without it (given back), and the median "
          "(min-max) of kept over given back, over consecutive pairs of processes")
    for case, (script, worker_args) in CASES.items():
        if args.only and not case.startswith(args.only):
            continue
        runs = {"1": [], "0": []}
        for i in range(args.repeats):
            for keep in ("1", "0") if i % 2 == 0 else ("0", "1"):
                rates, _ = repeat_processes(os.path.join(HERE, script), worker_args, 1, case,
                                            env={"MLCOURSE_KEEP_FREED_MEMORY": keep})
                runs[keep].append(rates[0])
        print(f"{case} ({args.repeats} pairs):")
        for impl in runs["1"][0]:
            kept = [r[impl] for r in runs["1"]]
            back = [r[impl] for r in runs["0"]]
            ratios = [a / b for a, b in zip(kept, back)]
            print(f"  {impl:<14} kept {statistics.median(kept):8.3f}/s, given back {statistics.median(back):8.3f}/s: "
                  f"x{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})", flush=True)


if __name__ == "__main__":
    main()
