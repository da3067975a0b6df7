"""Sharded grading: a deterministic split by student, a merge that is idempotent and refuses what is incomplete."""
import csv
import json
import shutil
from pathlib import Path

import pytest

from mlcourse.cli import main
from mlcourse.grading import GradeResult, class_summary, grade_class, merge_gradebooks, parse_shard, shard_of
from mlcourse.grading.shards import MANIFEST

COURSE = Path(__file__).resolve().parents[2]  # this checkout is the course folder
STUDENTS = [f"student{i:02d}" for i in range(12)]
PINNED = [1, 2, 2, 3]  # shard_of of alice, bob, carol and dave among 4


def test_parse_shard_reads_i_of_n_and_refuses_the_rest():
    assert parse_shard("2/8") == (2, 8) and parse_shard("1/1") == (1, 1)
    for bad in ("0/4", "5/4", "2", "a/b", "1/2/3", "-1/4"):
        with pytest.raises(ValueError, match="I/N"):
            parse_shard(bad)


def test_the_split_is_a_partition_that_depends_only_on_the_name_and_n():
    for n in (1, 2, 3, 7):
        shards = [shard_of(s, n) for s in STUDENTS]
        assert all(1 <= k <= n for k in shards)
    assert {shard_of(s, 3) for s in STUDENTS} == {1, 2, 3}  # 12 names fill 3 shards
    # pinned: a class split by one version of the package resumes and merges under the next
    assert [shard_of(name, 4) for name in ("alice", "bob", "carol", "dave")] == PINNED


def _class(folder: Path) -> Path:
    """A class whose every submission is invalid (a text file): graded without starting a kernel."""
    folder.mkdir(parents=True)
    for s in STUDENTS:
        (folder / f"{s}.txt").write_text(f"{s}'s answer")
    return folder


def _grade(folder, out, shard=None):
    return grade_class(folder, COURSE, out=out, workers=1, progress=False, shard=shard)


def test_shards_grade_only_their_students_and_merge_into_the_whole_class(tmp_path):
    subs = _class(tmp_path / "submitted")
    whole = _grade(subs, tmp_path / "whole")
    parts = [_grade(subs, tmp_path / f"shard-{i}", (i, 3)) for i in (1, 2, 3)]
    assert sorted(r.student for part in parts for r in part) == sorted(r.student for r in whole)
    for i, part in enumerate(parts, 1):
        assert all(shard_of(Path(r.notebook).stem, 3) == i for r in part)  # by the file's stem
        manifest = json.loads((tmp_path / f"shard-{i}" / MANIFEST).read_text())
        assert manifest["shard"] == [i, 3] and manifest["submissions"] == sorted(r.student for r in part)
    merged = merge_gradebooks([tmp_path / f"shard-{i}" for i in (3, 1, 2)], tmp_path / "merged")
    assert [r.student for r in merged] == [r.student for r in whole]
    files = ("gradebook.csv", "written_answers.csv", "gradebook.json")
    for name in files:
        assert (tmp_path / "merged" / name).read_text() == (tmp_path / "whole" / name).read_text(), name
    assert all(Path(r.feedback).parent == tmp_path / "merged" / "feedback" and Path(r.feedback).exists() for r in merged)
    before = {name: (tmp_path / "merged" / name).read_bytes() for name in files}
    merge_gradebooks([tmp_path / f"shard-{i}" for i in (1, 2, 3)], tmp_path / "merged")  # idempotent
    assert {name: (tmp_path / "merged" / name).read_bytes() for name in files} == before
    assert (tmp_path / "merged" / "gradebook.png").stat().st_size > 1000


def test_merge_refuses_a_missing_an_unfinished_or_a_conflicting_shard(tmp_path):
    subs = _class(tmp_path / "submitted")
    for i in (1, 2, 3):
        _grade(subs, tmp_path / f"shard-{i}", (i, 3))
    with pytest.raises(ValueError, match=r"shard 2/3 missing: run `mlcourse grade FOLDER --shard I/3`"):
        merge_gradebooks([tmp_path / "shard-1", tmp_path / "shard-3"], tmp_path / "merged")
    _grade(subs, tmp_path / "other", (1, 4))
    with pytest.raises(ValueError, match=r"holds shard 1/4, .* shard 1/3: merge the outputs of one split"):
        merge_gradebooks([tmp_path / "shard-1", tmp_path / "other"], tmp_path / "merged")
    with pytest.raises(ValueError, match="no shard.json"):
        merge_gradebooks([tmp_path / "submitted"], tmp_path / "merged")
    with pytest.raises(ValueError, match="one of the shards"):
        merge_gradebooks([tmp_path / "shard-1"], tmp_path / "shard-1")
    # a copy of shard 1 that holds another result for one of its students
    shutil.copytree(tmp_path / "shard-1", tmp_path / "copy")
    first = sorted((tmp_path / "copy" / "results").glob("*.json"))[0]
    result = json.loads(first.read_text())
    first.write_text(json.dumps({**result, "score": 5.0}))
    with pytest.raises(ValueError, match="two different results"):
        merge_gradebooks([tmp_path / f"shard-{i}" for i in (1, 2, 3)] + [tmp_path / "copy"], tmp_path / "merged")
    # an unfinished shard (stopped before its last result was saved): merge says to run it again
    first.unlink()
    with pytest.raises(ValueError, match=r"no current result for 1 of its \d+ submissions .*--shard 1/3 --out .* again"):
        merge_gradebooks([tmp_path / "copy", tmp_path / "shard-2", tmp_path / "shard-3"], tmp_path / "merged")
    # a result of other bytes than the ones listed (a folder reused for another class, stopped): stale
    shutil.rmtree(tmp_path / "copy")
    shutil.copytree(tmp_path / "shard-1", tmp_path / "copy")
    first = sorted((tmp_path / "copy" / "results").glob("*.json"))[0]
    first.write_text(json.dumps({**json.loads(first.read_text()), "sha256": "0" * 64, "status": "graded"}))
    with pytest.raises(ValueError, match="no current result for 1 of its"):
        merge_gradebooks([tmp_path / "copy", tmp_path / "shard-2", tmp_path / "shard-3"], tmp_path / "merged")
    # the same shard given twice (two copies of one output) merges
    shutil.rmtree(tmp_path / "copy")
    shutil.copytree(tmp_path / "shard-1", tmp_path / "copy")
    merged = merge_gradebooks([tmp_path / f"shard-{i}" for i in (1, 2, 3)] + [tmp_path / "copy"], tmp_path / "merged")
    assert len(merged) == len(STUDENTS)


def test_a_class_that_changes_between_shards_is_refused_and_error_rows_are_kept(tmp_path):
    subs = _class(tmp_path / "submitted")
    _grade(subs, tmp_path / "shard-1", (1, 2))
    (subs / "late.txt").write_text("handed in after shard 1 started")
    _grade(subs, tmp_path / "shard-2", (2, 2))
    with pytest.raises(ValueError, match="listed other submissions .* run every shard again"):
        merge_gradebooks([tmp_path / "shard-1", tmp_path / "shard-2"], tmp_path / "merged")
    _grade(subs, tmp_path / "shard-1", (1, 2))  # run again: both shards list the same class now
    # a submission the grader failed on keeps its row (as in a gradebook of the whole class)
    saved = sorted((tmp_path / "shard-2" / "results").glob("*.json"))[0]
    saved.write_text(json.dumps({**json.loads(saved.read_text()), "status": "error", "error": "the grader failed"}))
    merged = merge_gradebooks([tmp_path / "shard-1", tmp_path / "shard-2"], tmp_path / "merged")
    assert len(merged) == len(STUDENTS) + 1 and sum(r.status == "error" for r in merged) == 1


def test_gradebook_merge_command(tmp_path, capsys):
    subs = _class(tmp_path / "submitted")
    for i in (1, 2):
        assert main(["grade", str(subs), "--course", str(COURSE), "--out", str(tmp_path / f"s{i}"), "--shard", f"{i}/2",
                     "--workers", "1", "--quiet"]) == 0
    assert "merge every shard's folder" in capsys.readouterr().out
    assert main(["gradebook", "merge", str(tmp_path / "s1"), "--out", str(tmp_path / "m")]) == 2
    assert "shard 2/2 missing" in capsys.readouterr().err
    assert main(["gradebook", "merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(tmp_path / "m")]) == 0
    rows = list(csv.DictReader((tmp_path / "m" / "gradebook.csv").open()))
    assert sorted(r["student"] for r in rows) == sorted(f"{s}.txt" for s in STUDENTS)  # a flat file's name
    assert main(["grade", str(subs), "--course", str(COURSE), "--shard", "3/2"]) == 2
    assert "1 <= I <= N" in capsys.readouterr().err


def test_the_class_summary_counts_statuses_scores_and_passes():
    cells = lambda a, b: [{"name": "test_a", "score": a, "max_score": 2.0, "status": "passed" if a else "failed"},
                          {"name": "test_b", "score": b, "max_score": 3.0, "status": "passed" if b else "error"}]
    results = [GradeResult("a.ipynb", "01_episodes", "graded", "a", 5.0, 5.0, cells(2.0, 3.0)),
               GradeResult("b.ipynb", "01_episodes", "graded", "b", 2.0, 5.0, cells(2.0, 0.0)),
               GradeResult("c.ipynb", "01_episodes", "timeout", "c", 0.0, 5.0, cells(0.0, 0.0)[:1]),
               GradeResult("d.txt", None, "invalid", "d")]
    s = class_summary(results)
    ex = s["01_episodes"]
    assert ex["submissions"] == 3 and ex["statuses"] == {"graded": 2, "timeout": 1}
    assert ex["score_histogram"] == {"0": 1, "2": 1, "5": 1} and ex["mean_score"] == pytest.approx(7 / 3)
    assert ex["tests"]["test_a"] == {"points": 2.0, "passed": 2, "pass_rate": pytest.approx(2 / 3)}
    assert ex["tests"]["test_b"]["pass_rate"] == pytest.approx(1 / 3)  # c never reached it: not passed
    assert s["unknown"]["statuses"] == {"invalid": 1}
