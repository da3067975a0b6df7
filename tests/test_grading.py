"""Exercises are generated from solutions without leaks, and grading is robust."""
import hashlib
import json
import re
from pathlib import Path

import nbformat
import pytest

from mlcourse.grading import REPO, generate_exercise, grade, read_notebook

SOLUTIONS = sorted((REPO / "solutions").glob("*.ipynb"))


def _cells(path):
    nb = nbformat.read(path, as_version=4)
    return [(c.cell_type, c.source, c.metadata.get("nbgrader")) for c in nb.cells]


@pytest.mark.parametrize("source", SOLUTIONS, ids=lambda p: p.stem)
def test_exercises_are_up_to_date_and_leak_nothing(source, tmp_path):
    fresh = generate_exercise(source, tmp_path)
    committed = REPO / "exercises" / source.name
    assert committed.exists(), f"exercises/{source.name} is missing: run `make exercises`"
    assert _cells(fresh) == _cells(committed), f"exercises/{source.name} is out of date: run `make exercises`"
    text = committed.read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text
    # no line of a solution block or of a hidden test reaches the student version
    block = re.compile(r"### BEGIN (?:SOLUTION|HIDDEN TESTS)\n(.*?)### END[^\n]*", flags=re.S)
    sources = [src for _, src, _ in _cells(source)]
    public = {line.strip() for src in sources for line in block.sub("", src).splitlines()}
    secret = {line.strip() for src in sources for b in block.findall(src) for line in b.splitlines()}
    student = {line.strip() for _, src, _ in _cells(committed) for line in src.splitlines()}
    assert secret - public, "the solution notebook has no solution or hidden-test lines"
    leaked = (secret - public) & student
    assert not leaked, f"solution or hidden-test lines leaked into exercises/{source.name}: {sorted(leaked)}"


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _edited(source: Path, out: Path, edit) -> Path:
    nb = nbformat.read(source, as_version=4)
    for cell in nb.cells:
        edit(cell)
    nbformat.write(nb, out)
    return out


@pytest.fixture(scope="module")
def episodes_solution():
    return REPO / "solutions" / "01_episodes.ipynb"


def test_solution_gets_full_marks_and_is_not_modified(episodes_solution, tmp_path):
    before = _sha(episodes_solution)
    result = grade(episodes_solution, feedback_dir=tmp_path)
    assert result.status == "graded", result.error
    assert result.max_score == 5 and result.score == 5
    assert [c["name"] for c in result.cells] == ["test_sample_episode_indices", "test_accuracy_ci"]
    assert Path(result.feedback).read_text().count("test_sample_episode_indices") >= 1
    assert _sha(episodes_solution) == before


def test_untouched_exercise_gets_zero(tmp_path):
    exercise = REPO / "exercises" / "01_episodes.ipynb"
    result = grade(exercise, feedback_dir=tmp_path)
    assert result.status == "graded" and result.score == 0 and result.max_score == 5


def test_edited_tests_are_graded_by_the_original_tests(episodes_solution, tmp_path):
    """Half the work done, every test cell replaced by `pass`: the original tests still decide."""
    sol = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nbformat.read(episodes_solution, 4).cells
           if c.metadata.get("nbgrader", {}).get("solution")}

    def edit(cell):
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            cell.source = "pass"
        elif meta.get("grade_id") == "sample_episode_indices":
            cell.source = sol["sample_episode_indices"]

    sub = _edited(REPO / "exercises" / "01_episodes.ipynb", tmp_path / "01_episodes.ipynb", edit)
    before = _sha(sub)
    result = grade(sub, feedback_dir=tmp_path / "fb")
    assert result.status == "graded"
    assert {c["name"]: c["score"] for c in result.cells} == {"test_sample_episode_indices": 3,
                                                             "test_accuracy_ci": 0}
    assert _sha(sub) == before


def test_calling_the_package_instead_of_answering_scores_zero(tmp_path):
    def edit(cell):
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid == "sample_episode_indices":
            cell.source = "from mlcourse.episodes import sample_episode_indices"
        elif gid == "accuracy_ci":
            cell.source = ("import mlcourse.evaluation\n"
                           "def accuracy_ci(accuracies):\n    return mlcourse.evaluation.accuracy_ci(accuracies)")

    sub = _edited(REPO / "exercises" / "01_episodes.ipynb", tmp_path / "renamed_by_student.ipynb", edit)
    result = grade(sub, feedback_dir=tmp_path)
    assert result.assignment == "01_episodes"  # found from the graded cells, not the file name
    assert result.status == "graded" and result.score == 0


@pytest.mark.parametrize("content, reason", [(b"{not json", "invalid JSON"), (b"\xff\xfe\x00", "not UTF-8"),
                                             (b'{"a": 1}', "without a 'cells' list")])
def test_not_a_notebook_is_a_clear_error(tmp_path, content, reason):
    bad = tmp_path / "01_episodes.ipynb"
    bad.write_bytes(content)
    result = grade(bad)
    assert result.status == "invalid" and reason in result.error
    assert bad.read_bytes() == content


def test_cli_prints_scores_and_writes_json(tmp_path, capsys, episodes_solution):
    from mlcourse.cli import main

    bad = tmp_path / "x.ipynb"
    bad.write_text("nope")
    assert main(["grade", str(bad), "--json", str(tmp_path / "r.json")]) == 2
    assert "INVALID" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "invalid"


def test_read_notebook_accepts_a_real_notebook(episodes_solution):
    assert read_notebook(episodes_solution.read_bytes()).cells


@pytest.mark.slow
@pytest.mark.parametrize("name, points", [("02_protonet", 6), ("03_maml", 7), ("04_black_box", 6),
                                          ("05_learned_optimizers", 6), ("06_transfer", 6),
                                          ("07_distillation", 6), ("08_domain_adaptation", 6)])
def test_each_assignment_grades_solution_full_and_untouched_exercise_zero(name, points, tmp_path):
    solved = grade(REPO / "solutions" / f"{name}.ipynb", feedback_dir=tmp_path / "sol")
    assert solved.status == "graded", solved.error
    assert (solved.score, solved.max_score) == (points, points), solved.cells
    untouched = grade(REPO / "exercises" / f"{name}.ipynb", feedback_dir=tmp_path / "ex")
    assert untouched.status == "graded", untouched.error
    assert (untouched.score, untouched.max_score) == (0, points), untouched.cells
