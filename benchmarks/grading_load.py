"""Load test of class grading: N generated submissions of exercise 1, graded by `mlcourse grade`.

The class is a fixed mix (seeded): correct answers, half answers, wrong answers, untouched
notebooks, answers that loop forever, notebooks that raise at import, memory hogs, files that
are not notebooks, and two attacks (a hook on how later cells run, which the static screen
refuses; patched assertion helpers around a wrong answer, which run in full).

With ``--shards N`` (the default, 4) the class is graded as N shards in parallel, each by its
own ``mlcourse grade FOLDER --shard I/N`` process, as N machines would; shard ``--kill-shard``
is killed outright (SIGKILL of its process group) once ``--kill-at`` of its submissions have a
result, and then run again, as a rerun after a lost machine would. ``mlcourse gradebook merge``
joins the shards. Unless ``--no-single``, the same folder is then graded again by one
``mlcourse grade`` process, and the two gradebooks are compared row by row.

It prints the throughput of each run (submissions per minute, wall clock from the first
process started to the last result, the kill and the rerun included), the statuses, the
distribution of scores and the seconds per kind; it checks that every student has exactly
one row with the score its kind implies, that the merged gradebook has no row lost or
duplicated, and that it equals the single run's (status, score, notes and every test's score;
times and memory peaks aside). Exit status 1 on any problem.

Usage: ``python benchmarks/grading_load.py [--n 1000] [--shards 4] [--shard-workers 1]
[--kill-shard 2] [--workers 2] [--no-single] [--full] [--course DIR]``
(``--shards 0``: one in-process run only, as before; ``--full``: the notebooks' own budgets
instead of ``MLCOURSE_QUICK=1``; ``--course``: the course folder, by default this checkout).
"""
from __future__ import annotations

import argparse
import collections
import csv
import os
import random
import signal
import subprocess
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
HOOK = "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])  # every later cell empty"
PATCH = ("import numpy as np\nfor name in dir(np.testing):\n    if name.startswith('assert'):\n"
         "        setattr(np.testing, name, lambda *a, **k: None)  # every assertion helper passes")
# kind: (share, expected total score); the mix of the 20.6 per minute figure, with 5% of attacks added
KINDS = {"correct": (0.38, 5), "half": (0.1425, 3), "wrong": (0.1235, 3), "untouched": (0.095, 0),
         "loops": (0.057, 2), "import_error": (0.057, 0), "memory": (0.038, 3), "broken": (0.0285, 0),
         "not_a_notebook": (0.0285, 0), "hooked": (0.025, 0), "patched": (0.025, 3)}
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
               "memory": solved, "hooked": {}, "patched": {**solved, "accuracy_ci": WRONG_CI}}[kind]
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    if kind == "memory":  # after the first test: 3 points kept, the rest never runs
        at = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells].index("test_sample_episode_indices")
        nb.cells.insert(at + 1, nbformat.v4.new_code_cell(
            "import numpy as np\nhoard = [np.ones(10**8) for _ in range(50)]  # 40 GB"))
    if kind in ("hooked", "patched"):  # right after the imports
        at = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells].index("imports")
        nb.cells.insert(at + 1, nbformat.v4.new_code_cell(HOOK if kind == "hooked" else PATCH))
    nbformat.write(nb, folder / f"{student}.ipynb")


def kind_of(student: str) -> str:
    return student.split("_", 1)[1].rsplit(".", 1)[0]


def check_rows(rows: list[dict], n: int, what: str) -> list[str]:
    """Problems of a gradebook: a student without exactly one row, a score its kind does not imply."""
    problems = []
    counts = collections.Counter(r["student"] for r in rows)
    twice = sorted(s for s, c in counts.items() if c > 1)
    if twice or len(counts) != n:
        problems.append(f"{what}: {len(rows)} rows for {len(counts)} students of {n} (twice: {twice[:5]})")
    for r in rows:
        kind = kind_of(r["student"])
        expected_status = STATUS.get(kind, "graded")
        if r["status"] != expected_status or float(r["score"]) != KINDS[kind][1]:
            problems.append(f"{what}: {r['student']}: {r['status']} {r['score']}, expected {expected_status} "
                            f"{KINDS[kind][1]} ({r['message']})")
    return problems


def comparable(row: dict) -> dict:
    """A gradebook row without what differs from run to run (time, memory, where files went, messages with sizes)."""
    return {k: v for k, v in row.items() if k not in ("seconds", "peak_mb", "message", "notebook")}


def report(title: str, rows: list[dict], wall: float) -> None:
    n = len(rows)
    print(f"\n{title}: {n} submissions in {wall:.0f} s: {60 * n / wall:.1f} submissions per minute "
          f"(mean {sum(float(r['seconds']) for r in rows) / max(n, 1):.1f} s of grading each)")
    print("  statuses:", dict(sorted(collections.Counter(r["status"] for r in rows).items())))
    totals = collections.Counter(float(r["score"]) for r in rows)
    print("  scores (out of 5):")
    for score in sorted(totals):
        print(f"    {score:3g}  {'#' * int(50 * totals[score] / n):<50} {totals[score]}")
    by_kind = collections.defaultdict(list)
    for r in rows:
        by_kind[kind_of(r["student"])].append(float(r["seconds"]))
    print("  seconds per submission by kind: " + ", ".join(
        f"{k} {sum(v) / len(v):.1f} ({len(v)})" for k, v in sorted(by_kind.items())))


def read_rows(folder: Path) -> list[dict]:
    return list(csv.DictReader((folder / "gradebook.csv").open()))


def grade_command(subs: Path, course: Path, out: Path, workers: int, args, shard: str | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "mlcourse", "grade", str(subs), "--course", str(course), "--out", str(out),
           "--workers", str(workers), "--cell-timeout", str(args.cell_timeout),
           "--timeout", str(6 * args.cell_timeout + 60), "--memory-mb", str(args.memory_mb), "--quiet"]
    return cmd + (["--shard", shard] if shard else [])


def run_shards(subs: Path, course: Path, root: Path, args) -> tuple[list[Path], float, dict]:
    """Grade ``subs`` as ``args.shards`` parallel processes, killing and rerunning one; the outputs and the wall time."""
    outs = [root / f"shard-{i}" for i in range(1, args.shards + 1)]
    cmds = [grade_command(subs, course, out, args.shard_workers, args, f"{i}/{args.shards}")
            for i, out in enumerate(outs, 1)]
    logs = [(root / f"shard-{i}.log").open("ab") for i in range(1, args.shards + 1)]

    def start(i: int) -> subprocess.Popen:
        return subprocess.Popen(cmds[i], stdout=logs[i], stderr=subprocess.STDOUT, start_new_session=True)

    t0 = time.perf_counter()
    procs = [start(i) for i in range(args.shards)]
    kill = args.kill_shard - 1 if 1 <= args.kill_shard <= args.shards else None
    info = {"killed": None}
    while any(p.poll() is None for p in procs):
        time.sleep(1)
        if kill is not None and info["killed"] is None and procs[kill].poll() is None:
            manifest = outs[kill] / "shard.json"
            if manifest.exists():
                import json
                total = len(json.loads(manifest.read_text())["submissions"])
                done = len(list((outs[kill] / "results").glob("*.json")))
                if done >= args.kill_at * total:
                    os.killpg(procs[kill].pid, signal.SIGKILL)
                    procs[kill].wait()
                    info["killed"] = {"shard": kill + 1, "results": done, "of": total,
                                      "at_s": round(time.perf_counter() - t0)}
                    print(f"killed shard {kill + 1}/{args.shards} (SIGKILL) with {done} of its {total} results "
                          f"saved, {info['killed']['at_s']} s in; running it again", flush=True)
                    procs[kill] = start(kill)
    wall = time.perf_counter() - t0
    for i, p in enumerate(procs):
        if p.returncode != 0:
            print(f"shard {i + 1} exited with {p.returncode}: see {root}/shard-{i + 1}.log")
    return outs, wall, info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--shards", type=int, default=4, help="parallel shard processes (0: one in-process run)")
    parser.add_argument("--shard-workers", type=int, default=max(1, (os.cpu_count() or 2) // 4),
                        help="submissions each shard grades at a time")
    parser.add_argument("--kill-shard", type=int, default=2, help="the shard killed mid-run and rerun (0: none)")
    parser.add_argument("--kill-at", type=float, default=0.5, help="share of its results before it is killed")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="workers of the single-process run")
    parser.add_argument("--no-single", action="store_true", help="skip the single-process run and the comparison")
    parser.add_argument("--cell-timeout", type=float, default=10)
    parser.add_argument("--memory-mb", type=float, default=1500)
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="work in DIR and keep the gradebooks there")
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
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mlcourse-load-") as tmp:
        root = args.keep.resolve() if args.keep else Path(tmp)
        subs = root / "submitted"
        subs.mkdir(parents=True)
        for i, kind in enumerate(kinds):
            write_submission(subs, f"s{i:04d}_{kind}", kind, exercise, solved)
        print(f"{args.n} submissions: " + ", ".join(f"{k} {c}" for k, c in sorted(collections.Counter(kinds).items())))
        if args.shards <= 0:
            limits = Limits(cell_timeout=args.cell_timeout, timeout=6 * args.cell_timeout + 60,
                            memory_mb=args.memory_mb)
            start = time.perf_counter()
            grade_class(subs, course, out=root / "grades", workers=args.workers, limits=limits)
            wall = time.perf_counter() - start
            rows = read_rows(root / "grades")
            report(f"one process, {args.workers} workers", rows, wall)
            problems += check_rows(rows, args.n, "gradebook")
        else:
            outs, wall, info = run_shards(subs, course, root, args)
            merge = subprocess.run([sys.executable, "-m", "mlcourse", "gradebook", "merge", *map(str, outs),
                                    "--out", str(root / "merged")], capture_output=True, text=True)
            if merge.returncode != 0:
                problems.append(f"merge failed: {merge.stderr.strip()[-800:]}")
            else:
                merged = read_rows(root / "merged")
                report(f"{args.shards} shards in parallel, {args.shard_workers} worker(s) each"
                       + (f", shard {info['killed']['shard']} killed and rerun" if info["killed"] else ""),
                       merged, wall)
                problems += check_rows(merged, args.n, "merged")
                again = subprocess.run([sys.executable, "-m", "mlcourse", "gradebook", "merge", *map(str, outs),
                                        "--out", str(root / "merged")], capture_output=True, text=True)
                if again.returncode != 0 or read_rows(root / "merged") != merged:
                    problems.append("merging a second time gave another gradebook")
                if not args.no_single:
                    start = time.perf_counter()
                    single = subprocess.run(grade_command(subs, course, root / "single", args.workers, args),
                                            capture_output=True, text=True)
                    wall1 = time.perf_counter() - start
                    if single.returncode != 0:
                        problems.append(f"the single run failed: {single.stderr.strip()[-800:]}")
                    else:
                        rows = read_rows(root / "single")
                        report(f"one process, {args.workers} workers", rows, wall1)
                        problems += check_rows(rows, args.n, "single")
                        one = {r["student"]: comparable(r) for r in rows}
                        differ = [s for s, r in ((r["student"], comparable(r)) for r in merged) if one.get(s) != r]
                        if differ:
                            problems.append(f"{len(differ)} rows of the merged gradebook differ from the single "
                                            f"run's: {differ[:5]}")
                        else:
                            print("\nthe merged gradebook equals the single run's, row by row")
    for p in problems:
        print("PROBLEM", p)
    print("every student has exactly one row with the expected score" if not problems else
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
