"""Exercises and grading: nbgrader generates the student notebooks; ``mlcourse grade`` grades them.

- :mod:`~mlcourse.grading.release`: ``solutions/`` to ``exercises/`` (nbgrader).
- :mod:`~mlcourse.grading.assemble`: the student's answers merged into the instructor notebook.
- :mod:`~mlcourse.grading.sandbox`: the kernel launcher (hidden paths, another user, limits).
- :mod:`~mlcourse.grading.execute`: cell-by-cell execution and scores.
- :mod:`~mlcourse.grading.feedback`: the student's feedback page, without the hidden tests.
- :mod:`~mlcourse.grading.autograde`: one submission; :mod:`~mlcourse.grading.batch`: a class.
"""
from .assemble import assemble, read_notebook
from .autograde import GradeResult, grade
from .batch import collect_submissions, grade_class
from .execute import Limits
from .release import REPO, generate_exercise, generate_exercises

__all__ = ["REPO", "GradeResult", "Limits", "assemble", "collect_submissions", "generate_exercise",
           "generate_exercises", "grade", "grade_class", "read_notebook"]
