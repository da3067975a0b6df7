"""Grading past one machine: a class split into shards by student, and the shards' outputs merged.

``mlcourse grade FOLDER --shard I/N --out DIR_I`` grades the submissions of the students that
:func:`shard_of` puts in shard ``I`` of ``N`` (a hash of the student's name: the split does not
depend on the machine, on the order of the files or on who else submitted, and all of one
student's exercises land in one shard). Before grading, the shard writes ``DIR_I/shard.json``,
the list of what it is to grade; each result is saved as soon as it is known, as in any batch,
so a shard that is stopped is run again and resumes.

``mlcourse gradebook merge DIR_1 ... DIR_N --out DIR`` reads the shards' results and writes one
gradebook, the written answers, the feedback pages and the class summary. It refuses, saying
what to run, when a shard is missing, when a shard has not finished, or when two outputs hold
different results for one submission. Merging again gives the same files (idempotent), so it
can be run as often as shards finish.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from .autograde import GradeResult

__all__ = ["parse_shard", "shard_of", "write_manifest", "merge_gradebooks", "MANIFEST"]

MANIFEST = "shard.json"


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` as ``(I, N)``, with ``1 <= I <= N``; a clear error otherwise."""
    parts = str(text).split("/")
    try:
        i, n = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--shard must be I/N with whole numbers, e.g. 2/8, got {text!r}") from None
    if not 1 <= i <= n:
        raise ValueError(f"--shard I/N needs 1 <= I <= N, got {text!r}")
    return i, n


def shard_of(student: str, n: int) -> int:
    """The shard (1 to ``n``) of ``student``: from the SHA-256 of the name, the same on every machine."""
    if n < 1:
        raise ValueError(f"the number of shards must be at least 1, got {n}")
    return 1 + int(hashlib.sha256(student.encode("utf-8")).hexdigest(), 16) % n


def result_name(key: str) -> str:
    """The file under ``results/`` that holds the result of submission ``key``."""
    return f"{key.replace('/', '__')}.json"


def write_manifest(out: Path, shard: tuple[int, int], folder: Path, keys: list[str]) -> None:
    """``out/shard.json``: which shard ``out`` holds, of which folder, and every submission it is to grade."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"shard": list(shard), "folder": str(folder), "submissions": sorted(keys)}, indent=1))
    tmp.replace(out / MANIFEST)


def _read_shard(folder: Path) -> tuple[tuple[int, int], dict[str, GradeResult], dict[str, Path]]:
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise ValueError(f"{folder} holds no {MANIFEST}: it is not the output of `mlcourse grade ... --shard I/N`")
    try:
        info = json.loads(manifest.read_text())
        shard = (int(info["shard"][0]), int(info["shard"][1]))
        keys = [str(k) for k in info["submissions"]]
    except (ValueError, KeyError, TypeError, IndexError):
        raise ValueError(f"{manifest} is unreadable: run that shard's `mlcourse grade ... --shard I/N` again") from None
    results, pages, missing = {}, {}, []
    for key in keys:
        path = folder / "results" / result_name(key)
        try:
            result = GradeResult(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            missing.append(key)
            continue
        if result.status == "error":  # the grader failed on it: a rerun of the shard grades it again
            missing.append(key)
            continue
        results[key] = result
        page = folder / "feedback" / f"{key}.html"
        pages[key] = page if page.is_file() else Path(result.feedback) if result.feedback else page
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"shard {shard[0]}/{shard[1]} in {folder} has no result for {len(missing)} of its {len(keys)} "
                         f"submissions ({shown}): run its `mlcourse grade FOLDER --shard {shard[0]}/{shard[1]} "
                         f"--out {folder}` again (it resumes) and merge after it")
    return shard, results, pages


def _comparable(result: GradeResult) -> dict:
    """A result without where its feedback page was written (two copies of one shard differ only there)."""
    return {k: v for k, v in json.loads(result.to_json()).items() if k != "feedback"}


def merge_gradebooks(folders: list[str | Path], out: str | Path) -> list[GradeResult]:
    """Merge the outputs of ``mlcourse grade ... --shard I/N`` into one gradebook folder ``out``.

    Args:
        folders: One output folder per shard (every shard of one ``N``; a shard given twice must
            hold the same results both times).
        out: Where ``gradebook.csv``, ``gradebook.json``, ``gradebook.png``, ``written_answers.csv``,
            ``feedback/`` and ``results/`` go (may be a new folder; never one of ``folders``).

    Returns:
        Every submission's result, sorted by student.

    Raises:
        ValueError: No folder; a folder that is not a shard's output; shards of different ``N``;
            a missing or unfinished shard; two different results for one submission.
    """
    from .batch import write_gradebook

    if not folders:
        raise ValueError("name the shards' output folders to merge, e.g. grades/shard-*")
    folders = [Path(f).resolve() for f in folders]
    out = Path(out).resolve()
    if out in folders:
        raise ValueError(f"--out {out} is one of the shards: merge into another folder")
    seen: dict[int, Path] = {}
    n_shards: int | None = None
    merged: dict[str, GradeResult] = {}
    pages: dict[str, Path] = {}
    for folder in folders:
        shard, results, shard_pages = _read_shard(folder)
        if n_shards is not None and shard[1] != n_shards:
            raise ValueError(f"{folder} holds shard {shard[0]}/{shard[1]}, the others are of {n_shards} shards: "
                             "merge the outputs of one split")
        n_shards = shard[1]
        seen.setdefault(shard[0], folder)
        for key, result in results.items():
            if key in merged and _comparable(merged[key]) != _comparable(result):
                raise ValueError(f"two different results for {key} ({seen[shard[0]]} and {folder}): "
                                 "keep one output per shard")
            merged[key], pages[key] = result, shard_pages[key]
    absent = sorted(set(range(1, n_shards + 1)) - set(seen))
    if absent:
        raise ValueError(f"shard{'s' if len(absent) > 1 else ''} {', '.join(f'{i}/{n_shards}' for i in absent)} "
                         f"missing: run `mlcourse grade FOLDER --shard I/{n_shards}` for "
                         f"{'each' if len(absent) > 1 else 'it'} and merge again")
    (out / "results").mkdir(parents=True, exist_ok=True)
    (out / "feedback").mkdir(parents=True, exist_ok=True)
    ordered = []
    for key in sorted(merged, key=lambda k: (merged[k].student, merged[k].assignment or "")):
        result = merged[key]
        page = out / "feedback" / f"{key}.html"
        if pages[key].is_file():
            page.parent.mkdir(parents=True, exist_ok=True)
            if pages[key].resolve() != page:
                shutil.copyfile(pages[key], page)
            result.feedback = str(page)
        (out / "results" / result_name(key)).write_text(result.to_json())
        ordered.append(result)
    write_gradebook(ordered, out / "gradebook.csv")
    return ordered
