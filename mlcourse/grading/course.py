"""The course folder that grading works on: ``solutions/``, ``exercises/``, ``nbgrader_config.py``.

Grading never guesses where the course is: every function that needs it takes a ``course``
folder (on the command line ``--course DIR``, by default the current folder), and
:func:`course_folder` checks it before anything runs, so that a wrong folder gives one clear
line instead of a traceback halfway through a batch.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["CourseError", "course_folder", "solutions_folder"]

FIX = "pass --course DIR or cd into the course checkout"


class CourseError(ValueError):
    """A folder given as the course (or its solutions) is not one."""


def course_folder(course: str | Path, *, solutions: str | Path | None = None, config: bool = False) -> Path:
    """Check that ``course`` is a course folder and return it, resolved.

    Args:
        course: The folder holding ``solutions/``, ``exercises/`` and ``nbgrader_config.py``.
        solutions: Folder of instructor notebooks used instead of ``COURSE/solutions``; when
            given, ``COURSE/solutions`` need not exist. Either must hold a notebook.
        config: Also require ``COURSE/nbgrader_config.py`` (to generate exercises).

    Returns:
        ``course`` as an absolute path.

    Raises:
        CourseError: ``course`` is not a folder, or lacks what is needed, with the fix.
    """
    folder = Path(course).expanduser().resolve()
    if not folder.is_dir():
        raise CourseError(f"the course folder {folder} does not exist: {FIX}")
    solutions_folder(folder, solutions)
    if config and not (folder / "nbgrader_config.py").is_file():
        raise CourseError(f"{folder} is not a course folder: expected {folder / 'nbgrader_config.py'}; {FIX}")
    return folder


def solutions_folder(course: str | Path, solutions: str | Path | None = None) -> Path:
    """The folder of instructor notebooks (``COURSE/solutions`` unless ``solutions`` is given), checked.

    Args:
        course: The course folder.
        solutions: Folder of instructor notebooks instead of ``COURSE/solutions``.

    Returns:
        The solutions folder as an absolute path; it holds at least one notebook.

    Raises:
        CourseError: The folder is missing or holds no ``.ipynb``, with the fix.
    """
    if solutions is None:
        folder = Path(course).expanduser().resolve() / "solutions"
        if not folder.is_dir():
            raise CourseError(f"{folder.parent} is not a course folder: expected the instructor notebooks in "
                              f"{folder}/; {FIX}")
        fix = FIX
    else:
        folder = Path(solutions).expanduser().resolve()
        if not folder.is_dir():
            raise CourseError(f"the solutions folder {folder} does not exist: pass --solutions DIR, a folder of "
                              "instructor notebooks")
        fix = "pass --solutions DIR, a folder of instructor notebooks"
    if not any(folder.glob("*.ipynb")):
        raise CourseError(f"no instructor notebooks (*.ipynb) in {folder}: {fix}")
    return folder
