"""Grading takes the course folder explicitly (``--course``, default: the current folder)."""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlcourse import cli
from mlcourse.cli import main
from mlcourse.grading import CourseError, course_folder
from mlcourse.grading.autograde import default_hidden

COURSE = Path(__file__).resolve().parents[2]  # this checkout is the course folder
PACKAGE = COURSE / "mlcourse"


@pytest.fixture
def not_a_notebook(tmp_path):
    path = tmp_path / "sub" / "01_episodes.ipynb"
    path.parent.mkdir()
    path.write_text("{not json")
    return path


def _one_line_error(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"mlcourse {command}: "), err
    return lines[0]


def test_grade_finds_the_course_in_the_current_folder(monkeypatch, capsys, not_a_notebook):
    monkeypatch.chdir(COURSE)
    assert main(["grade", str(not_a_notebook), "--feedback", str(not_a_notebook.parent / "fb")]) == 2
    out = capsys.readouterr().out
    assert "INVALID" in out and "invalid JSON" in out  # graded against the course, not a course error


def test_grade_outside_a_course_is_a_one_line_error(monkeypatch, tmp_path, capsys, not_a_notebook):
    monkeypatch.chdir(tmp_path)
    assert main(["grade", str(not_a_notebook)]) == 2
    line = _one_line_error(capsys.readouterr().err, "grade")
    assert f"{tmp_path.resolve()} is not a course folder" in line
    assert str(tmp_path.resolve() / "solutions") in line
    assert "--course DIR" in line and "cd into the course checkout" in line


@pytest.mark.parametrize("layout", ["missing", "empty", "no solutions"])
def test_grade_with_a_bad_course_folder_names_it(tmp_path, capsys, not_a_notebook, layout):
    course = tmp_path / "course"
    if layout != "missing":
        course.mkdir()
    if layout == "empty":
        (course / "solutions").mkdir()
    for target in (not_a_notebook, not_a_notebook.parent):  # one notebook, and a class
        assert main(["grade", str(target), "--course", str(course), "--out", str(tmp_path / "grades")]) == 2
        line = _one_line_error(capsys.readouterr().err, "grade")
        assert str(course) in line and "--course DIR" in line
    assert not (tmp_path / "grades").exists()


def test_solutions_elsewhere_need_no_solutions_in_the_course(monkeypatch, tmp_path, capsys, not_a_notebook):
    monkeypatch.chdir(tmp_path)
    assert main(["grade", str(not_a_notebook), "--solutions", str(COURSE / "solutions"),
                 "--feedback", str(tmp_path / "fb")]) == 2
    assert "INVALID" in capsys.readouterr().out
    assert main(["grade", str(not_a_notebook), "--solutions", str(tmp_path / "nowhere")]) == 2
    line = _one_line_error(capsys.readouterr().err, "grade")
    assert str(tmp_path / "nowhere") in line and "--solutions DIR" in line


def test_exercises_outside_a_course_is_a_one_line_error(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["exercises"]) == 2
    assert "--course DIR" in _one_line_error(capsys.readouterr().err, "exercises")
    (tmp_path / "solutions").mkdir()
    shutil.copy(COURSE / "solutions" / "01_episodes.ipynb", tmp_path / "solutions")
    assert main(["exercises"]) == 2
    line = _one_line_error(capsys.readouterr().err, "exercises")
    assert str(tmp_path.resolve() / "nbgrader_config.py") in line and "--course DIR" in line
    assert not (tmp_path / "exercises").exists()


def test_exercises_default_to_the_current_folder(monkeypatch, tmp_path, capsys):
    (tmp_path / "solutions").mkdir()
    shutil.copy(COURSE / "solutions" / "01_episodes.ipynb", tmp_path / "solutions")
    shutil.copy(COURSE / "nbgrader_config.py", tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["exercises"]) == 0
    written = tmp_path / "exercises" / "01_episodes.ipynb"
    assert f"wrote {written}" in capsys.readouterr().out
    assert "raise NotImplementedError()" in written.read_text()


def test_without_the_grading_extra_the_command_says_what_to_install(monkeypatch, capsys, not_a_notebook):
    monkeypatch.setitem(cli.GRADING_NEEDS, "grade", ("no_such_grading_dependency",))
    assert main(["grade", str(not_a_notebook), "--course", str(COURSE)]) == 2
    err = capsys.readouterr().err
    assert "mlcourse grade needs the grading extra: pip install 'mlcourse[grading]'" in err
    assert "no_such_grading_dependency" in err and "Traceback" not in err


def test_course_folder_checks():
    assert course_folder(COURSE, config=True) == COURSE
    with pytest.raises(CourseError, match="pass --course DIR"):
        course_folder(COURSE / "mlcourse")


def test_default_hidden_hides_the_course_solutions_and_git(tmp_path):
    hidden = default_hidden(COURSE)
    assert str(COURSE / "solutions") in hidden and str(COURSE / ".git") in hidden
    other = tmp_path / "instructor"
    other.mkdir()
    assert default_hidden(tmp_path, other) == [str(other)]  # only what exists
    with pytest.raises(ValueError, match="which the grading kernels need"):
        default_hidden(COURSE, extra=[PACKAGE])


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules (and imported names) that ``path``, a module of the package, imports."""
    package = list(path.relative_to(COURSE).with_suffix("").parts)[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
    return names


def test_the_course_package_never_imports_grading():
    outside = [p for p in PACKAGE.rglob("*.py") if "grading" not in p.relative_to(PACKAGE).parts[:1]
               and p.name != "cli.py"]
    assert len(outside) > 10
    offenders = {str(p.relative_to(COURSE)): sorted(n for n in _imports(p) if n.startswith("mlcourse.grading"))
                 for p in outside}
    assert not {k: v for k, v in offenders.items() if v}
    # the check sees relative imports: these two do import grading
    assert "mlcourse.grading.autograde" in _imports(PACKAGE / "grading" / "worker.py")
    assert "mlcourse.grading" in _imports(PACKAGE / "cli.py")


def test_the_command_line_imports_grading_only_when_it_grades():
    code = "import sys, mlcourse.cli; print('mlcourse.grading' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=COURSE)
    assert out.stdout.strip() == "False", out.stderr[-2000:]
