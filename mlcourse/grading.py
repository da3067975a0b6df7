"""Generating student exercises and autograding submissions with nbgrader.

The repository keeps one notebook per exercise: ``solutions/<name>.ipynb`` (instructor
version, with ``### BEGIN SOLUTION`` blocks and hidden tests) and the generated
``exercises/<name>.ipynb`` (what students open). nbgrader wants one folder per
assignment, so each command stages the notebook into a throw-away nbgrader course that
uses the repository's ``nbgrader_config.py`` unchanged (``solutions`` is the source
directory, ``exercises`` the release directory) and copies results back.

Grading never touches the submitted file: it reads its bytes once, and grades a copy.
nbgrader restores the original (locked) test cells before grading, so a student who
edits or deletes a test is still graded by the instructor's tests.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

__all__ = ["REPO", "GradeResult", "generate_exercise", "generate_exercises", "grade", "read_notebook"]

REPO = Path(__file__).resolve().parents[1]
STUDENT = "student"


@dataclass
class GradeResult:
    """The outcome of grading one submission.

    ``status`` is ``"graded"``, ``"invalid"`` (not a notebook: ``error`` says why) or
    ``"error"`` (grading itself failed: ``error`` has nbgrader's log).
    """

    notebook: str
    assignment: str | None
    status: str
    score: float = 0.0
    max_score: float = 0.0
    cells: list[dict] = field(default_factory=list)
    feedback: str | None = None
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def summary(self) -> str:
        if self.status != "graded":
            return f"{self.notebook}: {self.status.upper()}: {self.error}"
        width = max((len(c["name"]) for c in self.cells), default=4)
        lines = [f"{self.notebook} ({self.assignment})"]
        lines += [f"  {c['name']:<{width}}  {c['score']:g} / {c['max_score']:g}" for c in self.cells]
        lines.append(f"  {'total':<{width}}  {self.score:g} / {self.max_score:g}")
        if self.feedback:
            lines.append(f"  feedback: {self.feedback}")
        return "\n".join(lines)


def read_notebook(data: bytes, name: str = "notebook") -> nbformat.NotebookNode:
    """Parse and validate notebook bytes, raising ``ValueError`` with a plain reason."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{name} is not a notebook: it is not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{name} is not a notebook: invalid JSON at line {err.lineno}, column {err.colno} "
                         f"({err.msg}); was it saved from Jupyter?") from None
    if not isinstance(raw, dict) or "cells" not in raw:
        raise ValueError(f"{name} is not a notebook: JSON without a 'cells' list")
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # nbformat raises several types for a malformed document
        raise ValueError(f"{name} is not a valid notebook: {str(err).splitlines()[0]}") from None
    return nb


def _nbgrader(root: Path, *args: str) -> subprocess.CompletedProcess:
    # nbgrader runs `alembic` and `jupyter` from PATH: put this interpreter's scripts first.
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    return subprocess.run([sys.executable, "-m", "nbgrader", *args, "--force"], cwd=root, capture_output=True,
                          text=True, env=env)


def _stage(root: Path, assignment: str, source: Path) -> None:
    """An nbgrader course in ``root`` with the repository's config and one assignment."""
    shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    folder = root / "solutions" / assignment
    folder.mkdir(parents=True)
    shutil.copy(source, folder / f"{assignment}.ipynb")
    proc = _nbgrader(root, "generate_assignment", assignment)
    if proc.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment {assignment} failed:\n{proc.stdout}\n{proc.stderr}")


def generate_exercise(source: Path, out_dir: Path) -> Path:
    """Generate the student version of ``source`` (a solutions notebook) into ``out_dir``."""
    assignment = source.stem
    with tempfile.TemporaryDirectory(prefix="mlcourse-release-") as tmp:
        root = Path(tmp)
        _stage(root, assignment, source)
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / f"{assignment}.ipynb"
        shutil.copy(root / "exercises" / assignment / f"{assignment}.ipynb", target)
    return target


def generate_exercises(solutions: Path = REPO / "solutions", out_dir: Path = REPO / "exercises") -> list[Path]:
    """Generate every student notebook from ``solutions/*.ipynb``."""
    return [generate_exercise(src, out_dir) for src in sorted(solutions.glob("*.ipynb"))]


def _graded_ids(nb: nbformat.NotebookNode) -> set[str]:
    return {c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells} - {None}


def _find_assignment(nb: nbformat.NotebookNode, path: Path, solutions: Path) -> str:
    sources = sorted(solutions.glob("*.ipynb"))
    if not sources:
        raise FileNotFoundError(f"no instructor notebooks in {solutions}: grade from a checkout of the course "
                                "or pass --solutions")
    names = [s.stem for s in sources]
    if path.stem in names:
        return path.stem
    ids = _graded_ids(nb)
    best = max(sources, key=lambda s: len(ids & _graded_ids(nbformat.read(s, as_version=4))))
    if not ids & _graded_ids(nbformat.read(best, as_version=4)):
        raise ValueError(f"cannot tell which exercise {path.name} is (file name and graded cells match none of "
                         f"{names}); pass --assignment NAME")
    return best.stem


def grade(submission: str | Path, assignment: str | None = None, solutions: Path = REPO / "solutions",
          feedback_dir: Path | None = None) -> GradeResult:
    """Autograde one submitted notebook in an isolated temporary nbgrader course.

    Args:
        submission: The student's notebook (never modified).
        assignment: Exercise name (stem of a ``solutions`` notebook); guessed from the file
            name, then from the graded cells, when omitted.
        solutions: Folder of instructor notebooks.
        feedback_dir: Where to write ``<name>.html`` feedback (default ``./feedback``).

    Returns:
        A :class:`GradeResult`; bad input gives ``status="invalid"``, never an exception.
    """
    path = Path(submission)
    try:
        data = path.read_bytes()
        nb = read_notebook(data, path.name)
        assignment = assignment or _find_assignment(nb, path, solutions)
    except (OSError, ValueError) as err:
        return GradeResult(str(path), assignment, "invalid", error=str(err))
    source = solutions / f"{assignment}.ipynb"
    if not source.exists():
        return GradeResult(str(path), assignment, "invalid",
                           error=f"no exercise named {assignment!r} in {solutions}")
    from nbgrader.api import Gradebook

    with tempfile.TemporaryDirectory(prefix="mlcourse-grade-") as tmp:
        root = Path(tmp)
        _stage(root, assignment, source)
        sub = root / "submitted" / STUDENT / assignment
        sub.mkdir(parents=True)
        (sub / f"{assignment}.ipynb").write_bytes(data)
        proc = _nbgrader(root, "autograde", assignment)
        if proc.returncode != 0:
            return GradeResult(str(path), assignment, "error", error=(proc.stdout + proc.stderr)[-4000:])
        with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
            nb_sub = gb.find_submission_notebook(assignment, assignment, STUDENT)
            order = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nbformat.read(source, 4).cells]
            cells = [{"name": g.name, "score": float(g.score), "max_score": float(g.max_score)}
                     for g in sorted(nb_sub.grades, key=lambda g: order.index(g.name) if g.name in order else 0)]
        result = GradeResult(str(path), assignment, "graded", sum(c["score"] for c in cells),
                             sum(c["max_score"] for c in cells), cells)
        if _nbgrader(root, "generate_feedback", assignment).returncode == 0:
            html = root / "feedback" / STUDENT / assignment / f"{assignment}.html"
            out = Path(feedback_dir) if feedback_dir else Path.cwd() / "feedback"
            out.mkdir(parents=True, exist_ok=True)
            target = out / f"{path.stem}.html"
            shutil.copy(html, target)
            result.feedback = str(target)
    return result
