"""Exercises are generated from solutions without leaks, and grading is robust."""
import hashlib
import json
import re
from pathlib import Path

import nbformat
import pytest

from mlcourse.grading import Limits, generate_exercise, grade, grade_class, read_notebook

COURSE = Path(__file__).resolve().parents[1]  # this checkout is the course folder
SOLUTIONS = sorted((COURSE / "solutions").glob("*.ipynb"))


def _cells(path):
    nb = nbformat.read(path, as_version=4)
    return [(c.cell_type, c.source, c.metadata.get("nbgrader")) for c in nb.cells]


@pytest.mark.parametrize("source", SOLUTIONS, ids=lambda p: p.stem)
def test_exercises_are_up_to_date_and_leak_nothing(source, tmp_path):
    fresh = generate_exercise(source, tmp_path, COURSE)
    committed = COURSE / "exercises" / source.name
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
    return COURSE / "solutions" / "01_episodes.ipynb"


def _hidden_lines(source: Path) -> set[str]:
    block = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", flags=re.S)
    lines = {line.strip() for c in nbformat.read(source, 4).cells for b in block.findall(c.source)
             for line in b.splitlines()}
    return {line for line in lines if len(line) > 12}


def _assert_no_hidden_test_in(path, source):
    text = Path(path).read_text()
    import html
    leaked = [line for line in _hidden_lines(source) if line in text or html.escape(line) in text]
    assert not leaked, f"hidden tests in the student's feedback {path}: {leaked[:3]}"


def test_solution_gets_full_marks_and_is_not_modified(episodes_solution, tmp_path):
    before = _sha(episodes_solution)
    result = grade(episodes_solution, COURSE, feedback_dir=tmp_path)
    assert result.status == "graded", result.error
    assert result.max_score == 5 and result.score == 5
    assert [c["name"] for c in result.cells] == ["test_sample_episode_indices", "test_accuracy_ci"]
    assert Path(result.feedback).read_text().count("test_sample_episode_indices") >= 1
    assert _hidden_lines(episodes_solution), "the check below needs hidden test lines"
    _assert_no_hidden_test_in(result.feedback, episodes_solution)
    assert _sha(episodes_solution) == before


def test_untouched_exercise_gets_zero(tmp_path):
    exercise = COURSE / "exercises" / "01_episodes.ipynb"
    result = grade(exercise, COURSE, feedback_dir=tmp_path)
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

    sub = _edited(COURSE / "exercises" / "01_episodes.ipynb", tmp_path / "01_episodes.ipynb", edit)
    before = _sha(sub)
    result = grade(sub, COURSE, feedback_dir=tmp_path / "fb")
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

    sub = _edited(COURSE / "exercises" / "01_episodes.ipynb", tmp_path / "renamed_by_student.ipynb", edit)
    result = grade(sub, COURSE, feedback_dir=tmp_path)
    assert result.assignment == "01_episodes"  # found from the graded cells, not the file name
    assert result.status == "graded" and result.score == 0


@pytest.mark.parametrize("content, reason", [(b"{not json", "invalid JSON"), (b"\xff\xfe\x00", "not UTF-8"),
                                             (b'{"a": 1}', "without a 'cells' list")])
def test_not_a_notebook_is_a_clear_error(tmp_path, content, reason):
    bad = tmp_path / "01_episodes.ipynb"
    bad.write_bytes(content)
    result = grade(bad, COURSE)
    assert result.status == "invalid" and reason in result.error
    assert bad.read_bytes() == content


def test_cli_prints_scores_and_writes_json(tmp_path, capsys, episodes_solution):
    from mlcourse.cli import main

    bad = tmp_path / "x.ipynb"
    bad.write_text("nope")
    assert main(["grade", str(bad), "--course", str(COURSE), "--json", str(tmp_path / "r.json")]) == 2
    assert "INVALID" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "invalid"


def test_read_notebook_accepts_a_real_notebook(episodes_solution):
    assert read_notebook(episodes_solution.read_bytes()).cells


@pytest.mark.slow
@pytest.mark.parametrize("name, points", [("02_protonet", 6), ("03_maml", 7), ("04_black_box", 6),
                                          ("05_learned_optimizers", 6), ("06_transfer", 6),
                                          ("07_distillation", 6), ("08_domain_adaptation", 6)])
def test_each_assignment_grades_solution_full_and_untouched_exercise_zero(name, points, tmp_path):
    solved = grade(COURSE / "solutions" / f"{name}.ipynb", COURSE, feedback_dir=tmp_path / "sol")
    assert solved.status == "graded", solved.error
    assert (solved.score, solved.max_score) == (points, points), solved.cells
    untouched = grade(COURSE / "exercises" / f"{name}.ipynb", COURSE, feedback_dir=tmp_path / "ex")
    assert untouched.status == "graded", untouched.error
    assert (untouched.score, untouched.max_score) == (0, points), untouched.cells


# --- a class: a folder of submissions, graded in parallel -------------------------------------

SOLVED = {c.metadata["nbgrader"]["grade_id"]: c.source
          for c in nbformat.read(COURSE / "solutions" / "01_episodes.ipynb", 4).cells
          if c.metadata.get("nbgrader", {}).get("solution")}
LOOP = "while True:\n    try:\n        while True:\n            pass\n    except KeyboardInterrupt:\n        pass"
SPY = '''import glob
from pathlib import Path
course = Path(COURSE_PATH)
stolen = []
for p in [course / "solutions" / "01_episodes.ipynb", *Path(course / ".git").glob("*")]:
    try:
        stolen.append(Path(p).read_text()[:2000])
    except Exception as err:
        stolen.append(type(err).__name__)
def spy(lines):  # sees every cell the grader sends, hidden tests included
    raise AssertionError("".join(lines) + str(stolen))
get_ipython().input_transformers_post.append(spy)
print(stolen)'''.replace("COURSE_PATH", repr(str(COURSE)))


def _gid(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def _student(path: Path, solved=(), insert=None, after="sample_episode_indices", edit=None) -> Path:
    """Exercise 1 with ``solved`` answers filled in and a cell ``insert``-ed after the cell ``after``."""
    nb = nbformat.read(COURSE / "exercises" / "01_episodes.ipynb", 4)
    for cell in nb.cells:
        if _gid(cell) in solved:
            cell.source = SOLVED[_gid(cell)]
    if insert:
        at = 0 if after is None else [_gid(c) for c in nb.cells].index(after) + 1
        nb.cells.insert(at, nbformat.v4.new_code_cell(insert))
    if edit:
        edit(nb)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    subs = root / "submitted"
    both = ("sample_episode_indices", "accuracy_ci")
    _student(subs / "alice.ipynb", both)
    _student(subs / "bob.ipynb")
    _student(subs / "carol.ipynb", both, insert=LOOP)
    _student(subs / "dave.ipynb", both, insert="import numpy as np\nx = [np.ones(4 * 10**8) for _ in range(25)]",
             after="test_sample_episode_indices")
    _student(subs / "erin.ipynb", both, edit=lambda nb: nb.cells.reverse())
    _student(subs / "frank.ipynb", both, edit=lambda nb: setattr(nb, "cells", [
        c for c in nb.cells if _gid(c) not in ("accuracy_ci", "test_accuracy_ci")]))
    _student(subs / "grace.ipynb", both, insert="import no_such_module_anywhere", after=None)
    _student(subs / "heidi.ipynb", both, insert=SPY, after="imports")
    (subs / "ivan.ipynb").write_text("{this is not json")
    (subs / "judy.py").write_text("print('my answer')")
    _student(subs / "ken.ipynb", both, insert="import os\nos._exit(3)")
    _student(subs / "leo" / "01_episodes" / "01_episodes.ipynb", ("sample_episode_indices",))  # nbgrader layout
    (subs / "mia" / "01_episodes").mkdir(parents=True)
    before = {p: _sha(p) for p in subs.rglob("*") if p.is_file()}
    limits = Limits(cell_timeout=5, timeout=25, memory_mb=1500)
    results = grade_class(subs, COURSE, out=root / "grades", workers=2, limits=limits, progress=False)
    return root, subs, results, before


def test_every_student_gets_exactly_one_row(graded_class):
    root, subs, results, _ = graded_class
    import csv
    rows = list(csv.DictReader((root / "grades" / "gradebook.csv").open()))
    assert sorted(r["student"] for r in rows) == ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
                                                  "ivan", "judy.py", "ken", "leo", "mia"]
    assert len(results) == len(rows)


def test_class_results_are_clear_for_every_kind_of_submission(graded_class):
    _, _, results, _ = graded_class
    by = {r.student: r for r in results}
    expect = {"alice": ("graded", 5), "bob": ("graded", 0), "carol": ("timeout", 0), "dave": ("memory", 3),
              "erin": ("graded", 5), "frank": ("graded", 3), "grace": ("graded", 0), "heidi": ("graded", 0),
              "ivan": ("invalid", 0), "judy.py": ("invalid", 0), "ken": ("died", 0), "leo": ("graded", 3),
              "mia": ("invalid", 0)}
    got = {name: (r.status, r.score) for name, r in by.items()}
    assert got == expect
    assert "more than the limit of 1500 MiB" in by["dave"].error
    assert "longer than 25 s" in by["carol"].error
    assert any("moved" in n for n in by["erin"].notes)
    assert any("'accuracy_ci' was missing" in n for n in by["frank"].notes)
    assert "not a notebook" in by["judy.py"].error and "invalid JSON" in by["ivan"].error
    assert "no notebook" in by["mia"].error
    assert by["leo"].assignment == "01_episodes"


def test_grading_never_modifies_a_submission(graded_class):
    _, subs, _, before = graded_class
    assert {p: _sha(p) for p in before} == before


def test_feedback_for_every_student_and_never_a_hidden_test(graded_class):
    _, _, results, _ = graded_class
    source = COURSE / "solutions" / "01_episodes.ipynb"
    for r in results:
        assert r.feedback and Path(r.feedback).exists(), r.student
        _assert_no_hidden_test_in(r.feedback, source)
    heidi = next(r for r in results if r.student == "heidi")
    # the spy drives the kernel (get_ipython): the static screen stops it before any of it runs
    assert all(c["error"] == "NotGraded" for c in heidi.cells), heidi.cells
    assert any("get_ipython" in n for n in heidi.notes) and "NotGraded" in Path(heidi.feedback).read_text()
    grace = next(r for r in results if r.student == "grace")  # an import of a module this machine lacks
    assert any("no_such_module_anywhere, which is not an installed package" in n for n in grace.notes), grace.notes


def test_kernels_cannot_read_the_solutions(tmp_path):
    """Where the grader may isolate (root on Linux, mount namespaces allowed) the kernel runs as
    another user and the solutions are gone; elsewhere a strict request fails loudly."""
    from mlcourse.grading.autograde import default_hidden, resolve_isolation
    from mlcourse.grading.execute import execute
    from mlcourse.grading.sandbox import isolation_available

    available, why = isolation_available()
    if not available:
        assert resolve_isolation("auto") == ("none", f"kernels run as this user and could read the solutions ({why})")
        with pytest.raises(RuntimeError, match="isolation 'namespace' was asked for but is not available"):
            resolve_isolation("namespace")
        return
    assert resolve_isolation("auto")[0] in ("bwrap", "namespace")
    code = (f"import os\nfrom pathlib import Path\ncourse = Path({str(COURSE)!r})\n"
            "def attempt(f):\n    try:\n        return 'READ ' + repr(f())[:60]\n"
            "    except Exception as err:\n        return type(err).__name__\n"
            "print(os.getuid())\n"
            "print(attempt(lambda: os.listdir(course / 'solutions')))\n"
            "print(attempt(lambda: os.listdir(course / '.git')))\n"
            "print(attempt(lambda: open(course / 'solutions' / '01_episodes.ipynb').read()))\n"
            "print(attempt(lambda: open(course / 'README.md').read()))")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    for mode in ("namespace", "bwrap") if resolve_isolation("auto")[0] == "bwrap" else ("namespace",):
        cell = nbformat.v4.new_code_cell(code)
        run = execute(nbformat.v4.new_notebook(cells=[cell]), Limits(isolation=mode, hide=default_hidden(COURSE),
                                                                     cell_timeout=60))
        lines = "".join(o.get("text", "") for o in cell.outputs).splitlines()
        assert int(lines[0]) >= 61000, lines
        if mode == "namespace":  # the hidden folders are empty and closed; the rest of the checkout is there
            assert lines[1:4] == ["PermissionError"] * 3 and lines[4].startswith("READ '# mlcourse"), lines
        else:  # an allow-list: nothing of the checkout but the package
            assert lines[1:5] == ["FileNotFoundError"] * 4, lines
        assert run.killed is None


def test_a_rerun_grades_only_what_changed(graded_class):
    root, subs, results, _ = graded_class
    old = {r.student: r for r in results}
    _student(subs / "bob.ipynb", ("accuracy_ci",))  # bob resubmits
    again = grade_class(subs, COURSE, out=root / "grades", workers=2, limits=Limits(cell_timeout=5, timeout=25,
                                                                            memory_mb=1500), progress=False)
    new = {r.student: r for r in again}
    assert new["bob"].score == 2 and new["bob"].sha256 != old["bob"].sha256
    assert new["alice"].seconds == old["alice"].seconds  # reused, not graded again


def test_a_class_graded_in_shards_merges_into_the_same_gradebook(graded_class, tmp_path):
    import shutil

    from mlcourse.grading import merge_gradebooks

    root, subs, _, _ = graded_class
    limits = Limits(cell_timeout=5, timeout=25, memory_mb=1500)
    parts = []
    # shard 1 starts from the class's saved results (unchanged submissions are not run again); shard 2 grades afresh
    shutil.copytree(root / "grades" / "results", tmp_path / "s1" / "results")
    for i in (1, 2):
        parts.append(grade_class(subs, COURSE, out=tmp_path / f"s{i}", workers=2, limits=limits, progress=False,
                                 shard=(i, 2)))
    students = [r.student for part in parts for r in part]
    assert all(parts) and len(students) == len(set(students)) == 13
    merged = merge_gradebooks([tmp_path / "s2", tmp_path / "s1"], tmp_path / "merged")
    assert len(merged) == sum(map(len, parts)) == 13
    import csv

    def rows(path):  # shard 2 graded again: the same rows but for how long and how much memory it took
        return [{k: v for k, v in r.items() if k not in ("seconds", "peak_mb")} for r in csv.DictReader(path.open())]

    assert rows(tmp_path / "merged" / "gradebook.csv") == rows(root / "grades" / "gradebook.csv")
    for name in ("written_answers.csv", "gradebook.json"):
        assert (tmp_path / "merged" / name).read_text() == (root / "grades" / name).read_text(), name
    summary = json.loads((tmp_path / "merged" / "gradebook.json").read_text())
    assert summary["01_episodes"]["statuses"]["graded"] == 7  # alice, bob, erin, frank, grace, heidi, leo


# --- written answers: graded by the instructor, never by the machine ---------------------------

def _with_written(path: Path, text: str | None) -> Path:
    """Exercise 1, both code answers solved, its written answer ``text`` (None: the cell deleted)."""
    def edit(nb):
        if text is None:
            nb.cells = [c for c in nb.cells if _gid(c) != "predict"]
        for cell in nb.cells:
            if _gid(cell) == "predict":
                cell.source = text
    return _student(path, ("sample_episode_indices", "accuracy_ci"), edit=edit)


def test_every_exercise_has_a_written_answer_for_the_instructor():
    from mlcourse.grading.assemble import written_cells
    for source in SOLUTIONS:
        written = written_cells(nbformat.read(source, 4))
        assert [gid for gid, _ in written] == ["predict"] and written[0][1] > 0, source.name


def test_a_written_answer_is_pending_never_scored_and_kept(tmp_path):
    answer = "Halves: h = 1.96 s / sqrt(n), so 4x the episodes gives h / 2. <b>checked</b>: 0.46"
    result = grade(_with_written(tmp_path / "sub" / "01_episodes.ipynb", answer), COURSE, feedback_dir=tmp_path)
    assert result.status == "graded" and (result.score, result.max_score) == (5, 5)
    assert result.pending == 1 and result.written == [{"name": "predict", "points": 1.0, "status": "pending",
                                                       "answer": answer}]
    page = Path(result.feedback).read_text()
    import html
    assert html.escape(answer) in page and "<b>checked</b>" not in page  # shown, escaped
    model = next(c.source for c in nbformat.read(COURSE / "solutions" / "01_episodes.ipynb", 4).cells
                 if _gid(c) == "predict")
    assert "sqrt 4 = 2" in model and "sqrt 4 = 2" not in page  # never the instructor's answer


@pytest.mark.parametrize("text", ["YOUR ANSWER HERE", "   ", None])
def test_an_empty_written_answer_is_unanswered(text, tmp_path):
    result = grade(_with_written(tmp_path / "sub" / "01_episodes.ipynb", text), COURSE, feedback_dir=tmp_path)
    assert result.status == "graded" and result.score == 5 and result.pending == 0
    assert result.written[0]["status"] == "unanswered"
    if text is None:
        assert any("'predict' was missing" in n for n in result.notes)


def test_the_gradebook_lists_pending_points_and_the_answers(tmp_path):
    subs = tmp_path / "submitted"
    _with_written(subs / "ann.ipynb", "It halves, by the square root of n.")
    _with_written(subs / "ben.ipynb", "YOUR ANSWER HERE")
    grade_class(subs, COURSE, out=tmp_path / "grades", assignment="01_episodes", workers=2, progress=False)
    import csv
    rows = {r["student"]: r for r in csv.DictReader((tmp_path / "grades" / "gradebook.csv").open())}
    assert (rows["ann"]["score"], rows["ann"]["pending"], rows["ann"]["predict"]) == ("5.0", "1.0", "pending")
    assert (rows["ben"]["pending"], rows["ben"]["predict"]) == ("0.0", "0")
    answers = list(csv.DictReader((tmp_path / "grades" / "written_answers.csv").open()))
    assert [(a["student"], a["status"], a["answer"]) for a in answers] == [
        ("ann", "pending", "It halves, by the square root of n."), ("ben", "unanswered", "YOUR ANSWER HERE")]
