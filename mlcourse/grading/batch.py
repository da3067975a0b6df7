"""Grade a whole class: a folder of submissions in, a gradebook CSV and feedback pages out.

Two layouts are read, and may be mixed:

- flat: ``FOLDER/<student>.ipynb`` (one notebook per student; any other file there gets an
  ``invalid`` row, as it is most likely a wrong upload);
- nbgrader's: ``FOLDER/<student>/<assignment>/<notebook>.ipynb`` (e.g. ``submitted/``).

Each submission is graded in a process of its own (``workers`` at a time, forked from a
process that imported the grader once: :mod:`mlcourse.grading.worker`), each kernel in
the sandbox of :mod:`mlcourse.grading.sandbox` with its own user id. Every submission gets
exactly one row, whatever happens: the result of each is saved to ``OUT/results/`` as soon
as it is known, so an interrupted batch loses nothing, and a rerun grades only what is new
or changed (same bytes, same result) unless ``regrade=True``.

Outputs: ``OUT/gradebook.csv`` (one row per submission, one column per test cell),
``OUT/written_answers.csv`` (the written answers, for the instructor to grade),
``OUT/feedback/<student>[/<assignment>].html`` (for the students), ``OUT/results/*.json``.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import queue
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .autograde import GradeResult, default_hidden, resolve_isolation, write_feedback
from .course import course_folder, solutions_folder
from .execute import Limits
from .shards import result_name, shard_of, write_manifest
from .summary import write_class_summary
from .worker import pool_context, run_job

__all__ = ["Submission", "collect_submissions", "grade_class", "write_gradebook", "write_written_answers"]

UID_BASE = 61000


@dataclass
class Submission:
    """One student's file for one exercise (``assignment`` None: guessed from the notebook)."""

    student: str
    path: Path
    assignment: str | None = None
    problem: str | None = None

    @property
    def key(self) -> str:
        return f"{self.student}/{self.assignment}" if self.assignment else self.student


def _visible(path: Path) -> bool:
    return not path.name.startswith((".", "__")) and path.name != "gradebook.db"


def collect_submissions(folder: str | Path) -> list[Submission]:
    """Every submission under ``folder`` (flat or nbgrader layout), sorted by student."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder of submissions")
    subs: list[Submission] = []
    for entry in sorted(p for p in folder.iterdir() if _visible(p)):
        if entry.is_file():
            wrong = None if entry.suffix == ".ipynb" else f"{entry.name} is not a notebook (.ipynb): submit the notebook"
            subs.append(Submission(entry.stem if entry.suffix == ".ipynb" else entry.name, entry, problem=wrong))
        elif entry.is_dir():
            assignments = sorted(p for p in entry.iterdir() if p.is_dir() and _visible(p))
            if not assignments:
                subs.append(Submission(entry.name, entry, problem=f"no assignment folder in {entry.name}/ "
                                                                  "(expected <student>/<assignment>/<notebook>.ipynb)"))
            for folder_a in assignments:
                notebooks = sorted(p for p in folder_a.glob("*.ipynb") if _visible(p))
                named = [p for p in notebooks if p.stem == folder_a.name]
                if len(notebooks) == 1 or named:
                    subs.append(Submission(entry.name, (named or notebooks)[0], folder_a.name))
                else:
                    why = "no notebook" if not notebooks else f"{len(notebooks)} notebooks and none named " \
                                                              f"{folder_a.name}.ipynb"
                    subs.append(Submission(entry.name, folder_a, folder_a.name, problem=f"{why} in {folder_a}"))
    students = [s.key for s in subs]
    for s in subs:  # the same stem twice in a flat folder (alice.ipynb, alice.txt): use the file name
        if students.count(s.key) > 1 and s.assignment is None:
            s.student = s.path.name
    return subs


def shard_name(sub: Submission) -> str:
    """The name a submission is sharded by: the student's, as the folder or file gives it.

    A flat folder's file is sharded by its stem (``alice.ipynb`` and ``alice.txt`` both by
    ``alice``), before :func:`collect_submissions` renames two such files apart: the shard of
    a submission never depends on what else was submitted.
    """
    return sub.path.stem if sub.assignment is None else sub.student


def _sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _save(path: Path, result: GradeResult) -> None:
    """Write ``result`` to ``path`` whole or not at all (a batch killed mid-write leaves no half file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(result.to_json())
    tmp.replace(path)


def _grade_in_process(sub: Submission, course: Path, solutions: Path, out: Path, limits: Limits,
                      slot: int) -> GradeResult:
    spec = {"notebook": str(sub.path), "assignment": sub.assignment, "course": str(course),
            "solutions": str(solutions),
            "feedback_dir": str(out / "feedback"), "feedback_name": f"{sub.key}.html", "student": sub.student,
            "limits": asdict(replace(limits, uid=UID_BASE + slot))}
    with tempfile.TemporaryDirectory(prefix="mlcourse-job-") as tmp:
        spec_path, result_path, log_path = Path(tmp) / "spec.json", Path(tmp) / "result.json", Path(tmp) / "log"
        spec_path.write_text(json.dumps(spec))
        job = pool_context().Process(target=run_job, name=f"grade {sub.key}",
                                     args=(str(spec_path), str(result_path), str(log_path), dict(os.environ),
                                           os.getcwd()))
        job.start()
        job.join(limits.timeout + 300)
        if job.is_alive():
            job.kill()
            job.join()
            why = f"the grading process did not finish within {limits.timeout + 300:.0f} s"
        elif result_path.exists():
            return GradeResult(**json.loads(result_path.read_text()))
        else:
            log = log_path.read_text(errors="replace")[-1500:] if log_path.exists() else ""
            why = f"the grading process exited with code {job.exitcode}: {log}"
    return GradeResult(str(sub.path), sub.assignment, "error", student=sub.student, error=why, sha256=_sha(sub.path))


FIELDS = ["student", "assignment", "status", "score", "max_score", "pending", "seconds", "peak_mb", "message",
          "notes", "notebook", "sha256"]


def write_gradebook(results: list[GradeResult], path: Path) -> None:
    """One row per result, one column per graded cell (in the exercises' order).

    ``score`` counts the autograded tests; ``pending`` the points of written answers that
    await the instructor, whose column says ``pending`` (or 0 when unanswered). The answers
    themselves go to ``written_answers.csv`` beside the gradebook (:func:`write_written_answers`),
    the class summary to ``gradebook.json`` and ``gradebook.png``
    (:func:`~mlcourse.grading.summary.write_class_summary`).
    """
    cells: list[str] = []
    for r in results:
        cells += [c["name"] for c in r.cells + r.written if c["name"] not in cells]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS + cells)
        writer.writeheader()
        for r in sorted(results, key=lambda r: (r.student, r.assignment or "")):
            row = {k: getattr(r, k) for k in FIELDS if k not in ("message", "notes")}
            row.update(message=(r.error or "").strip().splitlines()[-1][:300] if r.error else "",
                       notes="; ".join(r.notes))
            row.update({c["name"]: c["score"] for c in r.cells})
            row.update({w["name"]: "pending" if w["status"] == "pending" else 0 for w in r.written})
            writer.writerow(row)
    tmp.replace(path)
    write_written_answers(results, path.with_name("written_answers.csv"))
    write_class_summary(results, path.with_suffix(".json"), path.with_suffix(".png"))


def write_written_answers(results: list[GradeResult], path: Path) -> None:
    """Every written answer of the class, one row each (student, assignment, question, points, status, answer)."""
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "assignment", "question", "points", "status", "answer"])
        for r in sorted(results, key=lambda r: (r.student, r.assignment or "")):
            for w in r.written:
                writer.writerow([r.student, r.assignment, w["name"], w["points"], w["status"], w["answer"]])
    tmp.replace(path)


def _grade_all(todo: list[Submission], course: Path, solutions: Path, out: Path, limits: Limits, workers: int,
               progress: bool) -> dict[str, GradeResult]:
    """Grade ``todo`` ``workers`` at a time, each in a process of its own; save each result as it comes."""
    from ..progress import tqdm

    results: dict[str, GradeResult] = {}
    slots: queue.Queue[int] = queue.Queue()
    for i in range(workers):
        slots.put(i)

    def job(sub: Submission) -> GradeResult:
        slot = slots.get()
        try:
            return _grade_in_process(sub, course, solutions, out, limits, slot)
        finally:
            slots.put(slot)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(job, sub): sub for sub in todo}
        for fut in tqdm(as_completed(futures), total=len(futures), desc="grading", disable=not progress):
            sub = futures[fut]
            try:
                result = fut.result()
            except Exception as err:  # never lose a row
                result = GradeResult(str(sub.path), sub.assignment, "error", student=sub.student, error=repr(err))
            if not result.feedback:
                result = write_feedback(result, None, out / "feedback", f"{sub.key}.html")
            results[sub.key] = result
            _save(out / "results" / result_name(sub.key), result)
    return results


def grade_class(folder: str | Path, course: str | Path, out: str | Path = "grades", assignment: str | None = None,
                solutions: str | Path | None = None, workers: int | None = None,
                limits: Limits | None = None, isolation: str = "auto", regrade: bool = False,
                progress: bool = True, shard: tuple[int, int] | None = None, warm: bool = True) -> list[GradeResult]:
    """Grade every submission under ``folder`` in parallel; write the gradebook and feedback to ``out``.

    Args:
        folder: Submissions, flat or in nbgrader's ``<student>/<assignment>/`` layout.
        course: The course folder (``solutions/``, ``exercises/``, ``nbgrader_config.py``);
            its ``solutions/`` and ``.git`` are hidden from the kernels.
        out: Output folder (``gradebook.csv``, ``feedback/``, ``results/``).
        assignment: Exercise name for a flat folder (default: guessed per notebook).
        solutions: Folder of instructor notebooks (default ``COURSE/solutions``; hidden from the
            kernels).
        workers: Submissions graded at a time (default: the number of CPU cores).
        limits: Cell timeout, notebook timeout and memory of each kernel.
        isolation: ``"auto"``, ``"bwrap"`` or ``"namespace"`` (required: fail if unavailable) or ``"none"``
            (see :func:`~mlcourse.grading.autograde.resolve_isolation`).
        regrade: Grade again submissions whose bytes did not change since the last run.
        progress: Show a progress bar.
        shard: ``(I, N)``: grade only the students of shard ``I`` of ``N``
            (:func:`~mlcourse.grading.shards.shard_of`), and write ``OUT/shard.json`` first;
            ``mlcourse gradebook merge`` joins the shards' outputs.
        warm: With bubblewrap isolation as root, fork every kernel from one process that imported
            ipykernel, NumPy and PyTorch once (:mod:`mlcourse.grading.zygote`); ``False`` starts
            each kernel from scratch.

    Returns:
        One :class:`~mlcourse.grading.autograde.GradeResult` per submission (of the shard), sorted by student.

    Raises:
        CourseError: ``course`` has no ``solutions/`` (or ``solutions`` holds no notebook).
        ValueError: ``folder`` is not a folder, or a hidden path holds what the kernels need.
        RuntimeError: ``isolation="bwrap"`` or ``"namespace"`` was asked for and is not available.
    """
    from ..config import data_dir

    course = course_folder(course, solutions=solutions)
    solutions = solutions_folder(course, solutions)
    folder, out = Path(folder).resolve(), Path(out).resolve()
    subs = collect_submissions(folder)
    if shard is not None:
        i, n = shard
        if not (isinstance(i, int) and isinstance(n, int) and 1 <= i <= n):
            raise ValueError(f"shard must be (I, N) with 1 <= I <= N, got {shard!r}")
        listing = {s.key: _sha(s.path) if s.path.is_file() else None for s in subs}
        subs = [s for s in subs if shard_of(shard_name(s), n) == i]
        write_manifest(out, (i, n), folder, listing, [s.key for s in subs])
    mode, why = resolve_isolation(isolation)
    base = limits or Limits()
    limits = replace(base, isolation=mode, hide=default_hidden(course, solutions, [folder, out]),
                     data=base.data or str(data_dir()))
    workers = max(1, workers or os.cpu_count() or 1)
    (out / "results").mkdir(parents=True, exist_ok=True)
    if progress:
        print(f"grading {len(subs)} submissions from {folder} with {workers} workers; isolation {mode}: {why}",
              flush=True)
    results: dict[str, GradeResult] = {}
    todo = []
    for sub in subs:
        saved = out / "results" / result_name(sub.key)
        if sub.problem:  # saved too, so that a shard's results hold every one of its rows
            results[sub.key] = write_feedback(GradeResult(str(sub.path), sub.assignment, "invalid",
                                                          student=sub.student, error=sub.problem),
                                              None, out / "feedback", f"{sub.key}.html")
            _save(saved, results[sub.key])
        elif saved.exists() and not regrade:
            try:
                old = GradeResult(**json.loads(saved.read_text()))
            except (ValueError, TypeError):  # unreadable, or saved by another version: grade again
                old = None
            if old and old.sha256 and old.sha256 == _sha(sub.path) and old.status != "error":
                results[sub.key] = old
                continue
            todo.append(sub)
        else:
            todo.append(sub)
    zygote, zygote_dir = None, None
    if warm and mode == "bwrap" and os.geteuid() == 0 and todo:
        from . import zygote as zygote_module
        from .sandbox import _environment

        zygote_dir = tempfile.mkdtemp(prefix="mlcourse-zygote-")  # 0700: only root reaches the socket
        try:
            zygote, socket_path = zygote_module.start(zygote_dir, _environment(Path(zygote_dir)))
            limits = replace(limits, zygote=socket_path)
        except OSError as err:
            print(f"kernels start cold: {err}", flush=True)
    try:
        results.update(_grade_all(todo, course, solutions, out, limits, workers, progress))
    finally:
        if zygote is not None:
            zygote.kill()
            zygote.wait()
        if zygote_dir:
            shutil.rmtree(zygote_dir, ignore_errors=True)
    for sub in subs:  # a row for every submission, even one the loop above could not save
        results.setdefault(sub.key, GradeResult(str(sub.path), sub.assignment, "error", student=sub.student,
                                                error="not graded"))
    ordered = sorted(results.values(), key=lambda r: (r.student, r.assignment or ""))
    write_gradebook(ordered, out / "gradebook.csv")
    return ordered
