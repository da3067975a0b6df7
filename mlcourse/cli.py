"""Command line: ``mlcourse grade NOTEBOOK``, ``mlcourse exercises``, ``mlcourse data``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _grade(args: argparse.Namespace) -> int:
    from .grading import grade

    result = grade(args.notebook, assignment=args.assignment, solutions=Path(args.solutions),
                   feedback_dir=Path(args.feedback) if args.feedback else None)
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
    g = sub.add_parser("grade", help="autograde one submitted notebook")
    g.add_argument("notebook", help="the student's .ipynb (never modified)")
    g.add_argument("--json", metavar="OUT", help="also write the result as JSON to OUT")
    g.add_argument("--assignment", help="exercise name, e.g. 01_episodes (default: guessed)")
    g.add_argument("--solutions", default=str(REPO / "solutions"), help="folder of instructor notebooks")
    g.add_argument("--feedback", help="folder for the feedback HTML (default: ./feedback)")
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
