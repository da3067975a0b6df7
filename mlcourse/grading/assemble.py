"""The notebook that is graded: the instructor's notebook with the student's answers in it.

nbgrader marks every cell of an exercise with a ``grade_id``. A submission contributes only
its **answer cells** (``solution: true``); every other cell (instructions, imports, tests,
with their hidden parts) comes from the instructor's notebook, in the instructor's order.
So a student who edits, deletes or moves a test cell is graded by the original test in
its original place, a deleted answer is graded as unanswered, and cells the student added
(helpers, experiments) run right after the cell they followed in the submission. Every
such repair is reported in ``notes``, which the student sees in the feedback.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import nbformat

__all__ = ["Assembled", "assemble", "read_notebook", "visible_source", "graded_cells", "written_cells", "STUB",
           "TEXT_STUB"]

STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
TEXT_STUB = "YOUR ANSWER HERE"  # what nbgrader leaves in a written answer (``ClearSolutions.text_stub``)
_SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION[^\n]*", flags=re.S | re.M)
_HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS\n.*?^[ \t]*### END HIDDEN TESTS[^\n]*\n?", flags=re.S | re.M)


def read_notebook(data: bytes, name: str = "notebook") -> nbformat.NotebookNode:
    """Parse and validate notebook bytes, raising ``ValueError`` with a plain reason."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{name} is not a notebook: it is not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{name} is not a notebook: invalid JSON at line {err.lineno}, column {err.colno} "
                         f"({err.msg}); was it saved from Jupyter?") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
        raise ValueError(f"{name} is not a notebook: JSON without a 'cells' list")
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # nbformat raises several types for a malformed document
        raise ValueError(f"{name} is not a valid notebook: {str(err).splitlines()[0]}") from None
    return nb


def _meta(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def _is_answer(cell) -> bool:
    meta = _meta(cell)
    return bool(meta.get("solution")) and not meta.get("locked")


def visible_source(source: str, stub: str = STUB) -> str:
    """What a student sees of an instructor cell: solutions replaced by ``stub``, hidden tests removed."""
    source = _HIDDEN.sub("", source)
    return _SOLUTION.sub(lambda m: "\n".join(m.group(1) + line for line in stub.splitlines()), source)


def graded_cells(nb: nbformat.NotebookNode) -> list[tuple[str, float]]:
    """``(grade_id, points)`` of every autograded test cell, in order."""
    return [(_meta(c)["grade_id"], float(_meta(c).get("points", 0))) for c in nb.cells
            if _meta(c).get("grade") and c.cell_type == "code" and _meta(c).get("grade_id")]


def written_cells(nb: nbformat.NotebookNode) -> list[tuple[str, float]]:
    """``(grade_id, points)`` of every *written* answer (a markdown answer cell the instructor grades), in order."""
    return [(_meta(c)["grade_id"], float(_meta(c).get("points", 0))) for c in nb.cells
            if _meta(c).get("grade") and _meta(c).get("solution") and c.cell_type == "markdown"
            and _meta(c).get("grade_id")]


@dataclass
class Assembled:
    """The notebook to execute and what was repaired to build it."""

    notebook: nbformat.NotebookNode
    notes: list[str] = field(default_factory=list)


def assemble(source: nbformat.NotebookNode, submission: nbformat.NotebookNode) -> Assembled:
    """Merge the answers of ``submission`` into the instructor notebook ``source``.

    Args:
        source: The instructor notebook (solutions and hidden tests).
        submission: The student's notebook, already parsed.

    Returns:
        The notebook to grade (outputs cleared) and human-readable notes on every repair.
    """
    notes: list[str] = []
    known = {_meta(c)["grade_id"]: c for c in source.cells if _meta(c).get("grade_id")}
    theirs: dict[str, nbformat.NotebookNode] = {}
    extra_after: dict[str | None, list] = {}
    anchor: str | None = None
    order: list[str] = []
    for cell in submission.cells:
        gid = _meta(cell).get("grade_id")
        if gid in known and gid not in theirs and cell.cell_type == known[gid].cell_type:
            theirs[gid] = cell
            order.append(gid)
            anchor = gid
        elif cell.cell_type == "code" and cell.source.strip():
            extra_after.setdefault(anchor, []).append(cell)
    expected = [gid for gid in known if gid in theirs]
    if order != expected:
        notes.append("cells were moved in the submission; they were graded in the exercise's order")
    for gid, cell in known.items():
        if gid not in theirs:
            what = "answer" if _is_answer(cell) else "test" if _meta(cell).get("grade") else "exercise"
            fix = "graded as unanswered" if what == "answer" else "restored from the exercise"
            notes.append(f"the {what} cell '{gid}' was missing: {fix}")
        elif not _is_answer(cell) and cell.cell_type == "code" and \
                theirs[gid].source.strip() not in (visible_source(cell.source).strip(), cell.source.strip()):
            notes.append(f"changes to the locked cell '{gid}' were ignored")

    cells = [_fresh_code(c.source) for c in extra_after.get(None, [])]
    n_extra = len(cells)
    for cell in source.cells:
        gid = _meta(cell).get("grade_id")
        new = nbformat.from_dict(json.loads(json.dumps(cell)))
        if cell.cell_type == "code":
            new.outputs, new.execution_count = [], None
            if _is_answer(cell):
                new.source = theirs[gid].source if gid in theirs else visible_source(cell.source)
        elif _is_answer(cell):  # a written answer: the student's text, never the instructor's
            new.source = theirs[gid].source if gid in theirs else visible_source(cell.source, TEXT_STUB)
        cells.append(new)
        extra = extra_after.get(gid, []) if gid else []
        cells += [_fresh_code(c.source) for c in extra]
        n_extra += len(extra)
    if n_extra:
        notes.append(f"{n_extra} cell(s) added by the student ran after the cell they followed")
    nb = nbformat.v4.new_notebook(cells=cells, metadata=json.loads(json.dumps(source.metadata)))
    return Assembled(nb, notes)


def _fresh_code(source: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(source)
