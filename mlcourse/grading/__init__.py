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
- :mod:`~mlcourse.exercise_channel` (in the kernel) and :mod:`~mlcourse.grading.replay` (in the
  grader): the verdicts, decided in the grader's process on the values the kernel sent
  (:mod:`~mlcourse.wire`); :mod:`~mlcourse.grading.static`: the check that an answer
  is the student's own code.

"""
from .assemble import assemble, read_notebook
from .autograde import GradeResult, grade
from .batch import collect_submissions, grade_class
from .course import CourseError, course_folder
from .execute import Limits
from .release import generate_exercise, generate_exercises
from .shards import merge_gradebooks, parse_shard, shard_of
from .summary import class_summary

__all__ = ["CourseError", "GradeResult", "Limits", "assemble", "class_summary", "collect_submissions",
           "course_folder", "generate_exercise", "generate_exercises", "grade", "grade_class", "merge_gradebooks",
           "parse_shard", "read_notebook", "shard_of"]
