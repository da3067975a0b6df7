"""Exercises and grading: nbgrader generates the student notebooks; ``mlcourse grade`` grades them.

An optional part of the package (``pip install "mlcourse[grading]"``): the course modules
never import it. Every entry point takes the course folder (``solutions/``, ``exercises/``,
``nbgrader_config.py``) explicitly; :mod:`~mlcourse.grading.course` checks it.

- :mod:`~mlcourse.grading.course`: the course folder and its checks.
- :mod:`~mlcourse.grading.release`: ``solutions/`` to ``exercises/`` (nbgrader).
- :mod:`~mlcourse.grading.assemble`: the student's answers merged into the instructor notebook.
- :mod:`~mlcourse.grading.sandbox`: the kernel launcher (hidden paths, another user, limits).
- :mod:`~mlcourse.grading.execute`: cell-by-cell execution and scores.
- :mod:`~mlcourse.grading.feedback`: the student's feedback page, without the hidden tests.
- :mod:`~mlcourse.grading.autograde`: one submission; :mod:`~mlcourse.grading.batch`: a class.
- :mod:`~mlcourse.grading.shards`: a class split by student over machines, and the outputs merged.
- :mod:`~mlcourse.grading.summary`: the class summary (score histogram, pass rate of each test).
- :mod:`~mlcourse.grading.channel` (in the kernel) and :mod:`~mlcourse.grading.replay` (in the
  grader): the verdicts, decided in the grader's process on the values the kernel sent
  (:mod:`~mlcourse.grading.wire`); :mod:`~mlcourse.grading.static`: the check that an answer
  is the student's own code.

The names below load their modules on first use, so that a grading kernel importing
:mod:`~mlcourse.grading.channel` pulls in nothing of the grader.
"""
from __future__ import annotations

import importlib

_WHERE = {"assemble": "assemble", "read_notebook": "assemble", "GradeResult": "autograde", "grade": "autograde",
          "collect_submissions": "batch", "grade_class": "batch", "CourseError": "course",
          "course_folder": "course", "Limits": "execute", "generate_exercise": "release",
          "generate_exercises": "release", "merge_gradebooks": "shards", "parse_shard": "shards",
          "shard_of": "shards", "class_summary": "summary"}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
