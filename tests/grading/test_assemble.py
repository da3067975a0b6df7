"""The graded notebook is the instructor's, with the student's answers; repairs are reported."""
from pathlib import Path

import nbformat
import pytest

from mlcourse.grading import assemble
from mlcourse.grading.assemble import STUB, visible_source
from mlcourse.grading.batch import collect_submissions
from mlcourse.grading.feedback import safe_message

COURSE = Path(__file__).resolve().parents[2]  # this checkout is the course folder
SOURCE = nbformat.read(COURSE / "solutions" / "01_episodes.ipynb", 4)
EXERCISE = nbformat.read(COURSE / "exercises" / "01_episodes.ipynb", 4)


def _gid(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def _copy(nb):
    return nbformat.from_dict(nbformat.from_dict(nb))


def test_untouched_exercise_assembles_to_the_source_with_stubs_and_no_notes():
    out = assemble(SOURCE, EXERCISE)
    assert out.notes == []
    assert [_gid(c) for c in out.notebook.cells] == [_gid(c) for c in SOURCE.cells]
    answer = next(c for c in out.notebook.cells if _gid(c) == "accuracy_ci")
    assert "raise NotImplementedError()" in answer.source
    test = next(c for c in out.notebook.cells if _gid(c) == "test_accuracy_ci")
    assert "BEGIN HIDDEN TESTS" in test.source  # the hidden tests are back for grading


def test_answers_come_from_the_student_everything_else_from_the_instructor():
    sub = _copy(EXERCISE)
    for cell in sub.cells:
        if _gid(cell) == "accuracy_ci":
            cell.source = "def accuracy_ci(a):\n    return 0.5, 0.1"
        if _gid(cell) == "test_accuracy_ci":
            cell.source = "pass  # my test now"
    out = assemble(SOURCE, sub)
    cells = {_gid(c): c.source for c in out.notebook.cells}
    assert cells["accuracy_ci"] == "def accuracy_ci(a):\n    return 0.5, 0.1"
    assert cells["test_accuracy_ci"] == next(c.source for c in SOURCE.cells if _gid(c) == "test_accuracy_ci")
    assert out.notes == ["changes to the locked cell 'test_accuracy_ci' were ignored"]


def test_added_cells_follow_their_anchor_and_a_duplicate_answer_runs_as_added_code():
    sub = _copy(EXERCISE)
    i = [_gid(c) for c in sub.cells].index("sample_episode_indices")
    sub.cells.insert(i + 1, nbformat.v4.new_code_cell("helper = 1"))
    dup = _copy(sub.cells[i])
    dup.source = "def sample_episode_indices(*a):\n    return 'second try'"
    sub.cells.insert(i + 2, dup)
    out = assemble(SOURCE, sub)
    ids = [_gid(c) for c in out.notebook.cells]
    j = ids.index("sample_episode_indices")
    assert [c.source for c in out.notebook.cells[j + 1:j + 3]] == ["helper = 1", dup.source]
    assert "2 cell(s) added by the student ran after the cell they followed" in out.notes


def test_outputs_of_the_submission_are_not_carried_over():
    sub = _copy(EXERCISE)
    for cell in sub.cells:
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("stream", text="from the student's run")]
            cell.execution_count = 3
    out = assemble(SOURCE, sub)
    assert all(c.outputs == [] and c.execution_count is None for c in out.notebook.cells if c.cell_type == "code")


def test_visible_source_is_what_the_student_sees():
    test = next(c for c in SOURCE.cells if _gid(c) == "test_accuracy_ci")
    student = next(c for c in EXERCISE.cells if _gid(c) == "test_accuracy_ci")
    assert visible_source(test.source).strip() == student.source.strip()
    answer = next(c for c in SOURCE.cells if _gid(c) == "accuracy_ci")
    assert STUB.splitlines()[1] in visible_source(answer.source)


@pytest.mark.parametrize("cell, shown", [
    ({"error": "AssertionError", "message": "use the sample standard deviation (ddof=1)"},
     "AssertionError: use the sample standard deviation (ddof=1)"),  # written in the visible test
    ({"error": "AssertionError", "message": "support_idx differs from the reference"}, "AssertionError"),  # hidden
    ({"error": "CellTimeout", "message": "the cell ran longer than 5 s"}, "CellTimeout: the cell ran longer than 5 s"),
])
def test_feedback_messages_only_from_the_visible_test(cell, shown):
    visible = visible_source(next(c for c in SOURCE.cells if _gid(c) == "test_accuracy_ci").source)
    assert safe_message(cell, visible) == shown


def test_collect_submissions_reads_both_layouts_and_names_every_problem(tmp_path):
    (tmp_path / "ann.ipynb").write_text("{}")
    (tmp_path / "ann.txt").write_text("")
    (tmp_path / ".DS_Store").write_text("")
    (tmp_path / "ben" / "01_episodes").mkdir(parents=True)
    (tmp_path / "ben" / "01_episodes" / "01_episodes.ipynb").write_text("{}")
    (tmp_path / "ben" / "01_episodes" / "scratch.ipynb").write_text("{}")
    (tmp_path / "cat" / "02_protonet").mkdir(parents=True)
    (tmp_path / "cat" / "02_protonet" / "a.ipynb").write_text("{}")
    (tmp_path / "cat" / "02_protonet" / "b.ipynb").write_text("{}")
    subs = {s.key: s for s in collect_submissions(tmp_path)}
    assert set(subs) == {"ann", "ann.txt", "ben/01_episodes", "cat/02_protonet"}
    assert subs["ben/01_episodes"].path.name == "01_episodes.ipynb" and not subs["ben/01_episodes"].problem
    assert "2 notebooks and none named 02_protonet.ipynb" in subs["cat/02_protonet"].problem
    assert "not a notebook" in subs["ann.txt"].problem
    with pytest.raises(ValueError, match="is not a folder"):
        collect_submissions(tmp_path / "ann.ipynb")
