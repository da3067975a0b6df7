"""One grading job in its own process.

The batch grader (:mod:`mlcourse.grading.batch`) grades every submission in a process of its
own, so that nothing a submission does to the grading process can stop the batch. Those
processes are forked from one server process that imported the grader and PyTorch once
(:func:`pool_context`): a job starts in milliseconds instead of the seconds the imports take.
``python -m mlcourse.grading.worker SPEC.json OUT.json`` runs one job from a fresh interpreter.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import sys
from pathlib import Path

__all__ = ["main", "run_job", "pool_context", "PRELOAD"]

#: What the server process imports before it forks the jobs (the replay's references need PyTorch).
PRELOAD = ["mlcourse.grading.autograde", "mlcourse.grading.replay", "torch"]

_CONTEXT = None


def main(spec_path: str, out_path: str) -> int:
    """Grade the submission that ``spec_path`` describes; write its result to ``out_path``."""
    from .autograde import grade
    from .execute import Limits

    spec = json.loads(Path(spec_path).read_text())
    result = grade(spec["notebook"], Path(spec["course"]), assignment=spec.get("assignment"),
                   solutions=Path(spec["solutions"]),
                   feedback_dir=Path(spec["feedback_dir"]), limits=Limits(**spec["limits"]),
                   student=spec["student"], feedback_name=spec["feedback_name"])
    tmp = Path(out_path + ".tmp")
    tmp.write_text(result.to_json())
    tmp.replace(out_path)
    return 0


def run_job(spec_path: str, out_path: str, log_path: str, environ: dict | None = None, cwd: str | None = None) -> None:
    """:func:`main` in a forked job, its standard output and error sent to ``log_path``.

    ``environ`` and ``cwd``: the batch's environment and folder now (the server process keeps
    those it started with).
    """
    if environ is not None:
        os.environ.clear()
        os.environ.update(environ)
    if cwd is not None:
        os.chdir(cwd)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    sys.exit(main(spec_path, out_path))


def pool_context():
    """The ``forkserver`` context that forks grading jobs from a process with :data:`PRELOAD` imported."""
    global _CONTEXT
    if _CONTEXT is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        _CONTEXT = ctx
    return _CONTEXT


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
