"""Load test of class grading: N generated submissions of exercise 1, graded by `mlcourse grade`.

The class is a fixed mix (seeded): correct answers, half answers, wrong answers, untouched
notebooks, answers that loop forever, notebooks that raise at import, memory hogs, and files
that are not notebooks. The script grades the folder with :func:`mlcourse.grading.grade_class`
(the command's code path), then prints the throughput, the statuses, the distribution of
scores, and checks that every student got exactly one row with the score its kind implies.

Usage: ``python benchmarks/grading_load.py [--n 200] [--workers 2] [--full] [--course DIR]``
(``--full``: the notebooks' own budgets instead of ``MLCOURSE_QUICK=1``; ``--course``: the
course folder, by default the checkout that holds this script).
"""
from __future__ import annotations

import argparse
import collections
import csv
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from mlcourse.grading import CourseError, Limits, course_folder, grade_class

CHECKOUT = Path(__file__).resolve().parents[1]
WRONG_CI = ("def accuracy_ci(accuracies):\n    acc = np.asarray(accuracies, dtype=float)\n"
            "    return float(acc.mean()), float(1.96 * acc.std() / np.sqrt(acc.size))  # ddof=0: wrong")
LOOP = "def sample_episode_indices(labels, n_way, k_shot, n_query, rng):\n    while True:\n        pass"
# kind: (share, expected total score or None when the status decides)
KINDS = {"correct": (0.40, 5), "half": (0.15, 3), "wrong": (0.13, 3), "untouched": (0.10, 0),
         "loops": (0.06, 2), "import_error": (0.06, 0), "memory": (0.04, 3), "broken": (0.03, 0),
         "not_a_notebook": (0.03, 0)}
STATUS = {"memory": "memory", "broken": "invalid", "not_a_notebook": "invalid"}


def solved_answers(course: Path) -> dict[str, str]:
    """The instructor's answer to each answer cell of exercise 1, by cell id."""
    return {c.metadata["nbgrader"]["grade_id"]: c.source
            for c in nbformat.read(course / "solutions" / "01_episodes.ipynb", 4).cells
            if c.metadata.get("nbgrader", {}).get("solution")}


def write_submission(folder: Path, student: str, kind: str, exercise: Path, solved: dict[str, str]) -> None:
    """Write the submission of ``student``, of the given kind, from ``exercise`` and the ``solved`` answers."""
    if kind == "broken":
        (folder / f"{student}.ipynb").write_text(exercise.read_text()[:700])  # a truncated upload
        return
    if kind == "not_a_notebook":
        (folder / f"{student}.pdf").write_bytes(b"%PDF-1.4 not a notebook")
        return
    nb = nbformat.read(exercise, 4)
    answers = {"correct": solved, "half": {"sample_episode_indices": solved["sample_episode_indices"]},
               "wrong": {**solved, "accuracy_ci": WRONG_CI}, "untouched": {},
               "loops": {**solved, "sample_episode_indices": LOOP},
               "import_error": {k: "import numpy_but_misspelt as np\n" + v for k, v in solved.items()},
               "memory": solved}[kind]
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    if kind == "memory":  # after the first test: 3 points kept, the rest never runs
        at = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells].index("test_sample_episode_indices")
        nb.cells.insert(at + 1, nbformat.v4.new_code_cell(
            "import numpy as np\nhoard = [np.ones(10**8) for _ in range(50)]  # 40 GB"))
    nbformat.write(nb, folder / f"{student}.ipynb")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--cell-timeout", type=float, default=10)
    parser.add_argument("--memory-mb", type=float, default=1500)
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--course", type=Path, default=CHECKOUT, metavar="DIR",
                        help="the course folder (solutions/, exercises/; default: this checkout)")
    args = parser.parse_args()
    try:
        course = course_folder(args.course)
    except CourseError as err:
        parser.error(str(err))
    exercise = course / "exercises" / "01_episodes.ipynb"
    if not exercise.is_file():
        parser.error(f"{course} has no exercises/01_episodes.ipynb, the exercise this test submits: pass --course DIR")
    solved = solved_answers(course)
    if not args.full:
        os.environ["MLCOURSE_QUICK"] = "1"
    rng = random.Random(0)
    kinds = rng.choices(list(KINDS), weights=[share for share, _ in KINDS.values()], k=args.n)
    with tempfile.TemporaryDirectory(prefix="mlcourse-load-") as tmp:
        subs, out = Path(tmp) / "submitted", Path(tmp) / "grades"
        subs.mkdir()
        for i, kind in enumerate(kinds):
            write_submission(subs, f"s{i:03d}_{kind}", kind, exercise, solved)
        limits = Limits(cell_timeout=args.cell_timeout, timeout=6 * args.cell_timeout + 60, memory_mb=args.memory_mb)
        start = time.perf_counter()
        results = grade_class(subs, course, out=out, workers=args.workers, limits=limits)
        wall = time.perf_counter() - start
        rows = list(csv.DictReader((out / "gradebook.csv").open()))
    print(f"\n{len(results)} submissions graded in {wall:.0f} s with {args.workers} workers: "
          f"{60 * len(results) / wall:.1f} submissions per minute "
          f"(mean {sum(r.seconds for r in results) / len(results):.1f} s of grading each)")
    print("statuses:", dict(collections.Counter(r.status for r in results)))
    totals = collections.Counter(r.score for r in results)
    print("scores (out of 5):")
    for score in sorted(totals):
        print(f"  {score:3g}  {'#' * int(50 * totals[score] / len(results)):<50} {totals[score]}")
    problems = []
    if sorted(r["student"] for r in rows) != sorted({r["student"] for r in rows}) or len(rows) != args.n:
        problems.append(f"{len(rows)} gradebook rows for {args.n} students")
    for r in results:
        kind = r.student.split("_", 1)[1].rsplit(".", 1)[0]
        expected_status = STATUS.get(kind, "graded")
        if r.status != expected_status or r.score != KINDS[kind][1]:
            problems.append(f"{r.student}: {r.status} {r.score:g}, expected {expected_status} {KINDS[kind][1]}"
                            f" ({r.error})")
    by_kind = collections.defaultdict(list)
    for r in results:
        by_kind[r.student.split("_", 1)[1].rsplit(".", 1)[0]].append(r.seconds)
    print("seconds per submission by kind: " + ", ".join(
        f"{k} {sum(v) / len(v):.1f}" for k, v in sorted(by_kind.items())))
    for p in problems:
        print("PROBLEM", p)
    print("every student has exactly one row with the expected score" if not problems else
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
