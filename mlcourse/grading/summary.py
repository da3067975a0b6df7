"""The class at a glance, written beside the gradebook: a score histogram and each test's pass rate.

``gradebook.json`` holds, per exercise: how many submissions and of which status, the
autograded score's histogram (points -> submissions) and mean, and for each test cell its
points and the share of submissions that passed it (``passed``: the test earned its points;
a submission that never reached the test counts as not passed). ``gradebook.png`` draws the
same: one row per exercise, the histogram on the left and the pass rates on the right.
Written answers are left out: they await the instructor.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from .autograde import GradeResult

__all__ = ["class_summary", "write_class_summary"]


def class_summary(results: list[GradeResult]) -> dict:
    """Per exercise (``"unknown"`` when none could be read): counts by status, score histogram, pass rates."""
    by_exercise: dict[str, list[GradeResult]] = {}
    for r in results:
        by_exercise.setdefault(r.assignment or "unknown", []).append(r)
    summary = {}
    for name, group in sorted(by_exercise.items()):
        scores = [r.score for r in group]
        tests: dict[str, dict] = {}
        for r in group:
            for cell in r.cells:
                entry = tests.setdefault(cell["name"], {"points": cell.get("max_score", 0), "passed": 0})
                entry["passed"] += cell.get("status") == "passed"
        for entry in tests.values():
            entry["pass_rate"] = entry["passed"] / len(group)
        summary[name] = {
            "submissions": len(group),
            "statuses": dict(sorted(Counter(r.status for r in group).items())),
            "max_score": max((r.max_score for r in group), default=0.0),
            "mean_score": sum(scores) / len(scores),
            "score_histogram": {f"{s:g}": n for s, n in sorted(Counter(round(v, 4) for v in scores).items())},
            "tests": tests,
        }
    return summary


def write_class_summary(results: list[GradeResult], json_path: Path, png_path: Path) -> dict:
    """Write :func:`class_summary` to ``json_path`` and its plot to ``png_path``; return the summary."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's) is left alone

    summary = class_summary(results)
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
    tmp.replace(json_path)
    rows = max(1, len(summary))
    fig = Figure(figsize=(11, 3.2 * rows))
    axes = fig.subplots(rows, 2, squeeze=False)
    for (name, s), (left, right) in zip(summary.items(), axes):
        points = [float(p) for p in s["score_histogram"]]
        left.bar(points, list(s["score_histogram"].values()), width=0.6)
        left.set(xlabel=f"autograded score (of {s['max_score']:g})", ylabel="submissions",
                 title=f"{name}: {s['submissions']} submissions, mean {s['mean_score']:.2f}")
        names = list(s["tests"])
        right.barh(names, [100 * s["tests"][t]["pass_rate"] for t in names])
        right.set(xlim=(0, 100), xlabel="submissions that passed (%)", title="each test")
        right.invert_yaxis()
    if not summary:
        axes[0][0].set_title("no submissions")
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)
    return summary
