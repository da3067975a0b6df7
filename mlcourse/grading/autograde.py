"""Grade one submitted notebook: read, assemble, execute in a sandbox, score, give feedback.

:func:`grade` never raises and never modifies the submission: it reads its bytes once, and
every outcome (not a notebook, an unknown exercise, a kernel killed for memory or time, a
failure of the grader itself) is a :class:`GradeResult` with a ``status`` and a reason.
"""
from __future__ import annotations

import hashlib
import os
import json
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from .assemble import TEXT_STUB, assemble, graded_cells, read_notebook, visible_source, written_cells
from .course import solutions_folder
from .execute import Limits, execute, interrupted_cells, score_cells
from .feedback import feedback_html
from .replay import plan_tests
from .static import screen

__all__ = ["GradeResult", "grade", "write_feedback", "find_assignment", "resolve_isolation", "default_hidden",
           "written_answers"]


@dataclass
class GradeResult:
    """The outcome of grading one submission.

    ``status`` is ``"graded"`` (every cell ran; failures score 0), ``"memory"``, ``"disk"`` or
    ``"timeout"`` (the kernel was killed; cells that ran keep their points), ``"died"``
    (the kernel crashed), ``"invalid"`` (not a notebook, or an unknown exercise) or
    ``"error"`` (the grader failed; ``error`` says how). ``error`` explains any status but
    ``"graded"``; ``notes`` list the repairs made to the submission.

    ``score`` and ``max_score`` count the autograded tests only. Written answers (markdown
    answer cells) are for the instructor: ``written`` holds each one's ``name``, ``points``,
    ``status`` (``"pending"``, or ``"unanswered"`` for an empty one, which scores 0) and the
    student's ``answer``; ``pending`` is the points they can still add.
    """

    notebook: str
    assignment: str | None
    status: str
    student: str = "student"
    score: float = 0.0
    max_score: float = 0.0
    cells: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    feedback: str | None = None
    error: str | None = None
    sha256: str | None = None
    seconds: float = 0.0
    peak_mb: float | None = None
    written: list[dict] = field(default_factory=list)
    pending: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def summary(self) -> str:
        head = f"{self.notebook} ({self.assignment})"
        if self.status in ("invalid", "error"):
            return f"{self.notebook}: {self.status.upper()}: {self.error}"
        width = max((len(c["name"]) for c in self.cells), default=5)
        lines = [head] + [f"  {c['name']:<{width}}  {c['score']:g} / {c['max_score']:g}  {c['status']}"
                          for c in self.cells]
        lines.append(f"  {'total':<{width}}  {self.score:g} / {self.max_score:g}")
        lines += [f"  {w['name']}: {w['points']:g} point(s), written answer {w['status']} (graded by the instructor)"
                  for w in self.written]
        lines += [f"  {self.status.upper()}: {self.error}"] if self.status != "graded" else []
        lines += [f"  note: {n}" for n in self.notes]
        if self.feedback:
            lines.append(f"  feedback: {self.feedback}")
        return "\n".join(lines)


def _ids(nb) -> set:
    return {c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells} - {None}


def find_assignment(nb: nbformat.NotebookNode, path: Path, solutions: Path) -> str:
    """The exercise a submission answers: its file name, else the one sharing most cell ids."""
    sources = sorted(Path(solutions).glob("*.ipynb"))
    if not sources:
        raise FileNotFoundError(f"no instructor notebooks in {solutions}: pass --course DIR (the course checkout) "
                                "or --solutions DIR")
    names = [s.stem for s in sources]
    if path.stem in names:
        return path.stem
    ids = _ids(nb)
    overlap = {s.stem: len(ids & _ids(nbformat.read(s, as_version=4))) for s in sources}
    best = max(overlap, key=overlap.get)
    if not overlap[best]:
        raise ValueError(f"cannot tell which exercise {path.name} is (file name and graded cells match none of "
                         f"{names}); pass --assignment NAME")
    return best


def default_hidden(course: Path, solutions: Path | None = None, extra: list[Path] = ()) -> list[str]:
    """What a grading kernel must not see: instructor notebooks, the git objects, other submissions.

    Args:
        course: The course folder; its ``solutions/`` and ``.git`` are hidden.
        solutions: Another folder of instructor notebooks in use, hidden as well.
        extra: More paths to hide (the folder of submissions, the output folder).

    Returns:
        The paths that exist, sorted, for :attr:`~mlcourse.grading.execute.Limits.hide`.

    Raises:
        ValueError: A hidden path holds the interpreter or the package the kernels need.
    """
    course = Path(course).resolve()
    paths = {course / "solutions", course / ".git", *(Path(p).resolve() for p in extra)}
    if solutions is not None:
        paths.add(Path(solutions).resolve())
    needed = [Path(sys.prefix).resolve(), Path(__file__).resolve().parents[1]]
    for p in paths:
        for n in needed:
            if n == p or p in n.parents:
                raise ValueError(f"{p} holds {n}, which the grading kernels need: keep submissions, outputs and "
                                 "solutions in folders of their own")
    return sorted(str(p) for p in paths if p.exists())


def resolve_isolation(requested: str = "auto") -> tuple[str, str]:
    """``(mode, why)``: the strongest isolation available for ``"auto"``; a named mode is required.

    ``"bwrap"`` (bubblewrap's allow-list sandbox), else ``"namespace"`` (root's mount
    namespace that hides the solutions), else ``"none"``. Asking for ``"bwrap"`` or
    ``"namespace"`` where it cannot run raises ``RuntimeError`` with the reason.
    """
    from .sandbox import bwrap_available, isolation_available

    if requested == "none":
        return "none", "isolation turned off"
    fix = ("Grade as root on Linux (a container or a CI runner), or pass --isolation none for a trusted run")
    if requested in ("auto", "bwrap"):
        ok, why_not = bwrap_available()
        if ok:
            user = "as an unprivileged user, " if os.geteuid() == 0 else "as this user (not root: no other user id), "
            return "bwrap", (f"kernels run {user}in a bubblewrap sandbox: they see the interpreter, the package and "
                             "their own folder, a private /tmp, no network")
        if requested == "bwrap":
            raise RuntimeError(f"isolation 'bwrap' was asked for but is not available: {why_not}. {fix}")
    ok, why = isolation_available()
    if ok:
        return "namespace", ("kernels run as an unprivileged user in a mount namespace that hides the solutions, "
                             "without network; /tmp is shared with the machine (install bubblewrap for an allow-list)")
    if requested == "namespace":
        raise RuntimeError(f"isolation 'namespace' was asked for but is not available: {why}. {fix}")
    return "none", f"kernels run as this user and could read the solutions ({why})"


def grade(submission: str | Path, course: str | Path, assignment: str | None = None,
          solutions: str | Path | None = None, feedback_dir: Path | None = None, limits: Limits | None = None,
          student: str | None = None, feedback_name: str | None = None) -> GradeResult:
    """Autograde one submitted notebook in a sandboxed kernel.

    Args:
        submission: The student's notebook (never modified).
        course: The course folder (``solutions/``, ``exercises/``, ``nbgrader_config.py``);
            its ``solutions/`` and ``.git`` are hidden from the kernel.
        assignment: Exercise name (stem of a ``solutions`` notebook); guessed from the file
            name, then from the graded cells, when omitted.
        solutions: Folder of instructor notebooks (default ``COURSE/solutions``).
        feedback_dir: Where to write the feedback HTML (default ``./feedback``).
        limits: Time, memory and isolation of the kernel (default:
            :class:`~mlcourse.grading.execute.Limits` with namespace isolation where available).
        student: Name in the result and the feedback (default: the file's stem).
        feedback_name: File name of the feedback page (default ``<student>.html``).

    Returns:
        A :class:`~mlcourse.grading.autograde.GradeResult`; bad input (a course folder without
        instructor notebooks included) or a failing kernel gives a status, never an exception.
    """
    start = time.perf_counter()
    path = Path(submission)
    result = GradeResult(str(path), assignment, "error", student=student or path.stem)
    try:
        data = path.read_bytes()
        result.sha256 = hashlib.sha256(data).hexdigest()
        solutions = solutions_folder(course, solutions)
        nb = read_notebook(data, path.name)
        result.assignment = assignment or find_assignment(nb, path, solutions)
        source_path = solutions / f"{result.assignment}.ipynb"
        if not source_path.exists():
            raise ValueError(f"no exercise named {result.assignment!r} in {solutions}")
    except (OSError, ValueError) as err:
        result.status, result.error = "invalid", str(err)
        result.seconds = time.perf_counter() - start
        return write_feedback(result, None, feedback_dir, feedback_name)
    try:
        source = nbformat.read(source_path, as_version=4)
        result.max_score = sum(points for _, points in graded_cells(source))
        if limits is None:
            mode, _ = resolve_isolation("auto")
            limits = Limits(isolation=mode, hide=default_hidden(course, solutions))
        assembled = assemble(source, nb)
        result.notes = assembled.notes
        result.written = written_answers(assembled.notebook, source)
        result.pending = float(sum(w["points"] for w in result.written if w["status"] == "pending"))
        disarmed, flags = screen(assembled.notebook)
        result.notes += disarmed
        flags = flags if limits.screen else []
        if flags:  # code that drives the kernel: no machine verdict, the instructor reviews it
            result.notes += [f"not graded automatically: {f}" for f in flags]
            result.cells = [{"name": gid, "score": 0.0, "max_score": points, "status": "failed", "error": "NotGraded",
                             "message": "the notebook uses code that drives the kernel or loads code by name "
                                        "(see the notes); your instructor reviews it by hand"}
                            for gid, points in graded_cells(source)]
            result.status = "graded"
            result.seconds = round(time.perf_counter() - start, 2)
            return write_feedback(result, source, feedback_dir, feedback_name)
        plans = plan_tests(assembled.notebook, source)
        graded = {gid for gid, _ in graded_cells(source)}
        tests = [i for i, c in enumerate(assembled.notebook.cells)
                 if c.metadata.get("nbgrader", {}).get("grade_id") in graded]
        run = execute(assembled.notebook, limits, upto=max(tests, default=-1))  # nothing after the last test scores
        result.cells = score_cells(run, plans)
        result.score = sum(c["score"] for c in result.cells)
        result.notes += interrupted_cells(run)
        result.peak_mb = run.peak_mb
        if run.killed:
            result.status, result.error = run.killed["reason"], run.killed["detail"]
        elif run.error:
            result.status, result.error = "error", f"the kernel could not run the notebook: {run.error}"
        else:
            result.status = "graded"
    except Exception:  # the grader's own failure: keep the submission's row and the reason
        result.status, result.error = "error", traceback.format_exc(limit=5)[-2000:]
    result.seconds = round(time.perf_counter() - start, 2)
    return write_feedback(result, source if result.cells else None, feedback_dir, feedback_name)


MAX_ANSWER = 20_000  # characters of a written answer kept in the result (the submission keeps all of it)


def written_answers(assembled: nbformat.NotebookNode, source: nbformat.NotebookNode) -> list[dict]:
    """The written answers of an assembled notebook: ``name``, ``points``, ``status``, ``answer``.

    An answer is ``"unanswered"`` when it is empty or still what the exercise gave
    (nbgrader's ``YOUR ANSWER HERE``); otherwise ``"pending"``: no machine scores it.
    """
    given = {c.metadata.get("nbgrader", {}).get("grade_id"): visible_source(c.source, TEXT_STUB).strip()
             for c in source.cells if c.cell_type == "markdown"}
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in assembled.cells}
    out = []
    for gid, points in written_cells(source):
        text = by_id[gid].source if gid in by_id else ""
        answered = text.strip() not in ("", TEXT_STUB, given.get(gid, TEXT_STUB))
        entry = {"name": gid, "points": points, "status": "pending" if answered else "unanswered",
                 "answer": text[:MAX_ANSWER]}
        if len(text) > MAX_ANSWER:
            entry["truncated"] = len(text)
        out.append(entry)
    return out


def write_feedback(result: GradeResult, source, feedback_dir: Path | None, name: str | None) -> GradeResult:
    """Write the student's page for ``result`` (``source``: the instructor notebook, or None)."""
    out = Path(feedback_dir) if feedback_dir else Path.cwd() / "feedback"
    try:
        out.mkdir(parents=True, exist_ok=True)
        target = out / (name or f"{result.student}.html")
        target.parent.mkdir(parents=True, exist_ok=True)
        empty = nbformat.v4.new_notebook()
        target.write_text(feedback_html(result, source if source is not None else empty))
        result.feedback = str(target)
    except OSError as err:
        result.notes.append(f"feedback not written: {err}")
    return result
