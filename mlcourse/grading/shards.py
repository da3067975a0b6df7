"""Grading past one machine: a class split into shards by student, and the shards' outputs merged.

``mlcourse grade FOLDER --shard I/N --out DIR_I`` grades the submissions of the students that
:func:`shard_of` puts in shard ``I`` of ``N`` (a hash of the student's name: the split does not
depend on the machine, on the order of the files or on who else submitted, and all of one
student's exercises land in one shard). Before grading, the shard writes ``DIR_I/shard.json``,
the list of what it is to grade; each result is saved as soon as it is known, as in any batch,
so a shard that is stopped is run again and resumes.

``mlcourse gradebook merge DIR_1 ... DIR_N --out DIR`` reads the shards' results and writes one
gradebook, the written answers, the feedback pages and the class summary. It refuses, saying
what to run, when a shard is missing, when a shard has not finished (a submission of its list
without a result of the listed bytes), when the shards listed other classes (a submission added,
removed or changed between two shards' runs), or when two outputs hold different results for one
submission. Merging again gives the same files (idempotent), so it
can be run as often as shards finish.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from .autograde import GradeResult

__all__ = ["parse_shard", "shard_of", "write_manifest", "merge_gradebooks", "result_name", "MANIFEST"]

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


def write_manifest(out: Path, shard: tuple[int, int], folder: Path, listing: dict[str, str | None],
                   keys: list[str]) -> None:
    """``out/shard.json``: which shard ``out`` holds, the whole class as it was listed (each submission's
    SHA-256, ``None`` for a folder), and the submissions of this shard."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"shard": list(shard), "folder": str(folder), "class": dict(sorted(listing.items())),
                               "submissions": sorted(keys)}, indent=1))
    tmp.replace(out / MANIFEST)


class _Shard:
    def __init__(self, folder: Path) -> None:
        manifest = folder / MANIFEST
        if not manifest.is_file():
            raise ValueError(f"{folder} holds no {MANIFEST}: it is not the output of `mlcourse grade ... --shard I/N`")
        try:
            info = json.loads(manifest.read_text())
            self.index, self.n = int(info["shard"][0]), int(info["shard"][1])
            self.listing = {str(k): v for k, v in info["class"].items()}
            self.keys = [str(k) for k in info["submissions"]]
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            raise ValueError(f"{manifest} is unreadable: run that shard's `mlcourse grade ... --shard I/N` "
                             "again") from None
        self.folder = folder
        self.digest = hashlib.sha256(json.dumps(sorted(self.listing.items())).encode()).hexdigest()
        self.results: dict[str, GradeResult] = {}
        self.pages: dict[str, Path] = {}
        missing = []
        for key in self.keys:
            path = folder / "results" / result_name(key)
            try:
                result = GradeResult(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                missing.append(key)
                continue
            expected = self.listing.get(key)
            if expected and result.sha256 and result.sha256 != expected:  # a result of other bytes: stale
                missing.append(key)
                continue
            self.results[key] = result
            page = folder / "feedback" / f"{key}.html"
            self.pages[key] = page if page.is_file() else Path(result.feedback) if result.feedback else page
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise ValueError(f"shard {self.name} in {folder} has no current result for {len(missing)} of its "
                             f"{len(self.keys)} submissions ({shown}): run its `mlcourse grade FOLDER --shard "
                             f"{self.name} --out {folder}` again (it resumes) and merge after it")

    @property
    def name(self) -> str:
        return f"{self.index}/{self.n}"


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
        ValueError: No folder; a folder that is not a shard's output; shards of different ``N`` or
            of other listings of the class; a missing or unfinished shard; two different results
            for one submission.
    """
    from .batch import write_gradebook

    if not folders:
        raise ValueError("name the shards' output folders to merge, e.g. grades/shard-*")
    folders = [Path(f).resolve() for f in folders]
    out = Path(out).resolve()
    if out in folders:
        raise ValueError(f"--out {out} is one of the shards: merge into another folder")
    shards = [_Shard(folder) for folder in folders]
    first = shards[0]
    for shard in shards[1:]:
        if shard.n != first.n:
            raise ValueError(f"{shard.folder} holds shard {shard.name}, {first.folder} shard {first.name}: merge "
                             "the outputs of one split")
        if shard.digest != first.digest:
            raise ValueError(f"{shard.folder} and {first.folder} listed other submissions (a submission was added, "
                             "removed or changed between the two runs, or they grade other classes): run every "
                             f"shard again with the same N (unchanged submissions are not graded again), then merge")
    merged: dict[str, GradeResult] = {}
    pages: dict[str, Path] = {}
    origin: dict[str, Path] = {}
    for shard in shards:
        for key, result in shard.results.items():
            if key in merged and _comparable(merged[key]) != _comparable(result):
                raise ValueError(f"two different results for {key} ({origin[key]} and {shard.folder}): "
                                 "keep one output per shard")
            merged[key], pages[key], origin[key] = result, shard.pages[key], shard.folder
    absent = sorted(set(range(1, first.n + 1)) - {shard.index for shard in shards})
    if absent:
        raise ValueError(f"shard{'s' if len(absent) > 1 else ''} {', '.join(f'{i}/{first.n}' for i in absent)} "
                         f"missing: run `mlcourse grade FOLDER --shard I/{first.n}` for "
                         f"{'each' if len(absent) > 1 else 'it'} and merge again")
    unplaced = sorted(set(first.listing) - set(merged))
    if unplaced:  # cannot happen with shards of one listing; said rather than lost
        raise ValueError(f"{len(unplaced)} submissions of the class are in no shard's results ({', '.join(unplaced[:5])})")
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
