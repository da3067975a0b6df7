"""Command line: ``mlcourse grade NOTEBOOK``, ``mlcourse exercises``, ``mlcourse data``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _grade(args: argparse.Namespace) -> int:
    from .grading import Limits, grade, grade_class
    from .grading.autograde import default_hidden, resolve_isolation

    limits = Limits(cell_timeout=args.cell_timeout, timeout=args.timeout, memory_mb=args.memory_mb)
    path = Path(args.path)
    try:
        if path.is_dir():
            results = grade_class(path, out=args.out, assignment=args.assignment, solutions=args.solutions,
                                  workers=args.workers, limits=limits, isolation=args.isolation,
                                  regrade=args.regrade, progress=not args.quiet)
            out = Path(args.out).resolve()
            statuses: dict[str, int] = {}
            for r in results:
                statuses[r.status] = statuses.get(r.status, 0) + 1
            print(f"{len(results)} submissions: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())))
            print(f"gradebook: {out / 'gradebook.csv'}\nfeedback:  {out / 'feedback'}")
            if args.json:
                Path(args.json).write_text("[" + ",\n".join(r.to_json() for r in results) + "]\n")
            return 0
        mode, why = resolve_isolation(args.isolation)
        from .config import data_dir

        limits.isolation, limits.data = mode, str(data_dir())
        if mode == "none":
            print(f"mlcourse grade: isolation none: {why}", file=sys.stderr)
        limits.hide = default_hidden(Path(args.solutions), [])
    except (ValueError, RuntimeError) as err:
        print(f"mlcourse grade: {err}", file=sys.stderr)
        return 2
    result = grade(path, assignment=args.assignment, solutions=Path(args.solutions),
                   feedback_dir=Path(args.feedback) if args.feedback else None, limits=limits)
    print(result.summary())
    if args.json:
        Path(args.json).write_text(result.to_json())
    return 0 if result.status == "graded" else 2


def _exercises(args: argparse.Namespace) -> int:
    from .grading import generate_exercises

    for path in generate_exercises(Path(args.solutions), Path(args.out)):
        print(f"wrote {path}")
    return 0


def _data(args: argparse.Namespace) -> int:
    from .data.fontglot import load_fontglot

    arrays = load_fontglot(args.preset, seed=args.seed)
    print(f"FontGlot ({args.preset}): {arrays['images'].shape[0]} classes x {arrays['images'].shape[1]} drawers")
    return 0


def main(argv: list[str] | None = None) -> int:
    REPO = Path(__file__).resolve().parents[1]  # the course checkout (solutions/, exercises/)
    parser = argparse.ArgumentParser(prog="mlcourse", description="Tools of the mlcourse course.")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grade", help="autograde a submitted notebook, or a folder of them (a class)",
                       description="Grade one notebook, or every submission in a folder (FOLDER/<student>.ipynb "
                                   "or nbgrader's FOLDER/<student>/<assignment>/*.ipynb) in parallel. "
                                   "Submissions are never modified.")
    g.add_argument("path", help="a student's .ipynb, or a folder of submissions")
    g.add_argument("--json", metavar="FILE", help="also write the result(s) as JSON to FILE")
    g.add_argument("--assignment", help="exercise name, e.g. 01_episodes (default: guessed per notebook)")
    g.add_argument("--solutions", default=str(REPO / "solutions"), help="folder of instructor notebooks")
    g.add_argument("--feedback", help="one notebook: folder for the feedback HTML (default: ./feedback)")
    g.add_argument("--out", default="grades", help="a folder: where gradebook.csv, feedback/ and results/ go")
    g.add_argument("--workers", type=int, help="a folder: submissions graded at a time (default: CPU cores)")
    g.add_argument("--cell-timeout", type=float, default=300, help="seconds per cell before it is interrupted")
    g.add_argument("--timeout", type=float, default=1200, help="seconds per notebook before its kernel is killed")
    g.add_argument("--memory-mb", type=float, default=4096, help="memory per kernel before it is killed")
    g.add_argument("--isolation", choices=["auto", "namespace", "none"], default="auto",
                   help="namespace: kernels run as an unprivileged user that cannot see the solutions (needs "
                        "root on Linux; fail if unavailable); auto: namespace where possible")
    g.add_argument("--regrade", action="store_true", help="a folder: grade again unchanged submissions")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=_grade)
    e = sub.add_parser("exercises", help="regenerate student notebooks from solutions/ with nbgrader")
    e.add_argument("--solutions", default=str(REPO / "solutions"))
    e.add_argument("--out", default=str(REPO / "exercises"))
    e.set_defaults(func=_exercises)
    d = sub.add_parser("data", help="build (or check) the FontGlot cache")
    d.add_argument("--preset", default="full", choices=["full", "tiny"])
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_data)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
