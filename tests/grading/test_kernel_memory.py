"""Grading kernels run with glibc's allocator defaults, so that the memory limit means what it did."""
from __future__ import annotations

import nbformat

from mlcourse.grading import Limits
from mlcourse.grading.execute import execute


def test_grading_kernels_run_with_glibcs_defaults():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import mlcourse.memory as m\nprint(m._applied)")])
    run = execute(nb, Limits(isolation="none", cell_timeout=120))
    assert run.error is None, run.error
    assert "".join(o.get("text", "") for o in nb.cells[0].outputs).strip() == "None"
