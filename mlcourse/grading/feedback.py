"""Feedback for the student: scores and reasons, and nothing of the hidden tests.

The page is built from the grading result, not from the executed notebook: once a hidden
test has been sent to the kernel, student code can copy its text into any output (an input
transformer, an exception message, a display update of an earlier cell), so no output of
the graded run is shown. For a failed test the page gives the exception's type, and its
message only when that message is written literally in the visible part of the test, which
the student already has.
"""
from __future__ import annotations

import html
from pathlib import Path

from .assemble import visible_source

__all__ = ["safe_message", "feedback_html"]

_OURS = {"CellTimeout", "CallMismatch", "NotGraded"}  # messages the grader wrote itself


def safe_message(cell: dict, visible: str) -> str:
    """The text shown for a failed cell, given the visible source of its test."""
    error = cell.get("error") or cell.get("status", "")
    message = (cell.get("message") or "").strip()
    if message and (error in _OURS or message in visible):
        return f"{error}: {message}"
    return error


def feedback_html(result, source_nb) -> str:
    """An HTML page for ``result`` (a :class:`~mlcourse.grading.autograde.GradeResult`)."""
    visible = {c.metadata.get("nbgrader", {}).get("grade_id"): visible_source(c.source)
               for c in source_nb.cells if c.cell_type == "code"}
    esc = html.escape
    rows = []
    for cell in result.cells:
        shown = "passed" if cell["status"] == "passed" else safe_message(cell, visible.get(cell["name"], ""))
        rows.append(f"<tr class='{esc(cell['status'].replace(' ', '-'))}'><td><code>{esc(cell['name'])}</code></td>"
                    f"<td>{cell['score']:g} / {cell['max_score']:g}</td><td>{esc(shown)}</td></tr>")
    written = [f"<h3><code>{esc(w['name'])}</code> ({w['points']:g} point{'s' if w['points'] != 1 else ''}): "
               f"{'pending, graded by your instructor' if w['status'] == 'pending' else 'unanswered, 0 points'}</h3>"
               f"<pre class='answer'>{esc(w['answer'])}</pre>" for w in getattr(result, "written", [])]
    notes = [f"<li>{esc(n)}</li>" for n in result.notes]
    if result.error and result.status != "graded":
        notes.insert(0, f"<li><strong>{esc(result.status)}</strong>: {esc(result.error)}</li>")
    name = esc(Path(result.notebook).name)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Feedback: {esc(result.assignment or '')} ({esc(result.student)})</title>
<style>body{{font-family:sans-serif;max-width:50em;margin:2em auto;line-height:1.4}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}
tr.passed td:nth-child(2){{color:#1a7f37}}tr.failed td:nth-child(2),tr.timeout td:nth-child(2),
tr.not-run td:nth-child(2){{color:#cf222e}}pre.answer{{white-space:pre-wrap;background:#f6f8fa;padding:.5em}}</style></head><body>
<h1>{esc(result.assignment or 'unknown exercise')}: {result.score:g} / {result.max_score:g}</h1>
<p>Student <strong>{esc(result.student)}</strong>, notebook <code>{name}</code>, sha256
<code>{esc((result.sha256 or '')[:16])}</code>.</p>
<table><tr><th>test</th><th>points</th><th>result</th></tr>
{''.join(rows)}
</table>
{'<h2>Written answers</h2><p>Your instructor grades these; the points above do not count them yet.</p>'
 + ''.join(written) if written else ''}
{'<h2>Notes</h2><ul>' + ''.join(notes) + '</ul>' if notes else ''}
<p>Tests with hidden parts report only the type of the error. Run the visible tests in your
notebook to see the details.</p>
</body></html>
"""
