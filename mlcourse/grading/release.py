"""Student versions of the exercises, generated from the instructor notebooks by nbgrader.

The repository keeps one notebook per exercise: ``solutions/<name>.ipynb`` (instructor
version, with ``### BEGIN SOLUTION`` blocks and hidden tests) and the generated
``exercises/<name>.ipynb`` (what students open). nbgrader wants one folder per assignment,
so :func:`generate_exercise` stages the notebook into a throw-away nbgrader course that uses
the repository's ``nbgrader_config.py`` unchanged (``solutions`` is the source directory,
``exercises`` the release directory) and copies the result back.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["REPO", "generate_exercise", "generate_exercises"]

REPO = Path(__file__).resolve().parents[2]


def _nbgrader(root: Path, *args: str) -> subprocess.CompletedProcess:
    # nbgrader runs `alembic` and `jupyter` from PATH: put this interpreter's scripts first.
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    return subprocess.run([sys.executable, "-m", "nbgrader", *args, "--force"], cwd=root, capture_output=True,
                          text=True, env=env)


def generate_exercise(source: Path, out_dir: Path) -> Path:
    """Generate the student version of ``source`` (a solutions notebook) into ``out_dir``."""
    assignment = source.stem
    with tempfile.TemporaryDirectory(prefix="mlcourse-release-") as tmp:
        root = Path(tmp)
        shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
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


def generate_exercises(solutions: Path = REPO / "solutions", out_dir: Path = REPO / "exercises") -> list[Path]:
    """Generate every student notebook from ``solutions/*.ipynb``."""
    return [generate_exercise(src, out_dir) for src in sorted(Path(solutions).glob("*.ipynb"))]
