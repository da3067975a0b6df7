"""Student versions of the exercises, generated from the instructor notebooks by nbgrader.

A course folder keeps one notebook per exercise: ``solutions/<name>.ipynb`` (instructor
version, with ``### BEGIN SOLUTION`` blocks and hidden tests) and the generated
``exercises/<name>.ipynb`` (what students open). nbgrader wants one folder per assignment,
so :func:`generate_exercise` stages the notebook into a throw-away nbgrader course that uses
the course's ``nbgrader_config.py`` unchanged (``solutions`` is the source directory,
``exercises`` the release directory) and copies the result back.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .course import FIX, CourseError, course_folder, solutions_folder

__all__ = ["generate_exercise", "generate_exercises"]


def _nbgrader(root: Path, *args: str) -> subprocess.CompletedProcess:
    # nbgrader runs `alembic` and `jupyter` from PATH: put this interpreter's scripts first.
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    return subprocess.run([sys.executable, "-m", "nbgrader", *args, "--force"], cwd=root, capture_output=True,
                          text=True, env=env)


def generate_exercise(source: Path, out_dir: Path, course: Path) -> Path:
    """Generate the student version of one instructor notebook.

    Args:
        source: The instructor notebook (``solutions/<name>.ipynb``).
        out_dir: Folder for the student version (created if needed).
        course: The course folder, whose ``nbgrader_config.py`` nbgrader uses.

    Returns:
        The path of the student notebook, ``out_dir/<name>.ipynb``.

    Raises:
        CourseError: ``course`` has no ``nbgrader_config.py``.
        RuntimeError: nbgrader failed (its output is in the message).
    """
    config = Path(course).expanduser().resolve() / "nbgrader_config.py"
    if not config.is_file():
        raise CourseError(f"{config.parent} is not a course folder: expected {config}; {FIX}")
    assignment = source.stem
    with tempfile.TemporaryDirectory(prefix="mlcourse-release-") as tmp:
        root = Path(tmp)
        shutil.copy(config, root / "nbgrader_config.py")
        folder = root / "solutions" / assignment
        folder.mkdir(parents=True)
        shutil.copy(source, folder / f"{assignment}.ipynb")
        proc = _nbgrader(root, "generate_assignment", assignment)
        if proc.returncode != 0:
            raise RuntimeError(f"nbgrader generate_assignment {assignment} failed:\n{proc.stdout}\n{proc.stderr}")
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / f"{assignment}.ipynb"
        shutil.copy(root / "exercises" / assignment / f"{assignment}.ipynb", target)
    return target


def generate_exercises(course: Path, solutions: Path | None = None, out_dir: Path | None = None) -> list[Path]:
    """Generate every student notebook of a course from its instructor notebooks.

    Args:
        course: The course folder (``solutions/``, ``exercises/``, ``nbgrader_config.py``).
        solutions: Folder of instructor notebooks (default ``COURSE/solutions``).
        out_dir: Folder for the student notebooks (default ``COURSE/exercises``).

    Returns:
        The student notebooks written, one per ``solutions/*.ipynb``.

    Raises:
        CourseError: ``course`` lacks ``solutions/`` (or ``solutions`` holds no notebook) or
            ``nbgrader_config.py``.
    """
    course = course_folder(course, solutions=solutions, config=True)
    solutions = solutions_folder(course, solutions)
    out_dir = Path(out_dir) if out_dir is not None else course / "exercises"
    return [generate_exercise(src, out_dir, course) for src in sorted(solutions.glob("*.ipynb"))]
