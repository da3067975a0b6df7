"""The notebooks as committed: no outputs, in the book's table of contents, thin."""
import json
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = (sorted(REPO.glob("lectures/*.ipynb")) + sorted(REPO.glob("book/*.ipynb"))
             + sorted(REPO.glob("solutions/*.ipynb")) + sorted(REPO.glob("exercises/*.ipynb")))


def _toc_files(node) -> list[str]:
    files = []
    if isinstance(node, dict):
        if "file" in node:
            files.append(node["file"])
        if "root" in node:
            files.append(node["root"])
        for value in node.values():
            files += _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            files += _toc_files(item)
    return files


def test_there_are_notebooks():
    assert len(list(REPO.glob("lectures/*.ipynb"))) >= 1
    assert len(list(REPO.glob("solutions/*.ipynb"))) >= 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(REPO)))
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name}: a cell has stored outputs; clear them before committing"
            assert cell.get("execution_count") is None, f"{path.name}: a cell has an execution count"


def test_toc_lists_every_lecture_and_never_solutions():
    files = _toc_files(yaml.safe_load((REPO / "_toc.yml").read_text()))
    for lecture in REPO.glob("lectures/*.ipynb"):
        assert f"lectures/{lecture.stem}" in files, f"{lecture.name} is missing from _toc.yml"
    assert not [f for f in files if f.startswith(("solutions", "exercises"))]
    for f in files:
        assert list(REPO.glob(f + ".*")), f"_toc.yml names {f}, which does not exist"


@pytest.mark.parametrize("path", sorted(REPO.glob("lectures/*.ipynb")), ids=lambda p: p.name)
def test_lectures_are_thin_and_use_the_package(path):
    nb = json.loads(path.read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert any("mlcourse" in c for c in code), "lectures import their code from mlcourse"
    longest = max(len(c.splitlines()) for c in code)
    assert longest <= 30, f"a code cell of {longest} lines: move logic into the package"


def _colab_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("colab_tool", REPO / "tools" / "colab.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_notebook_opens_in_colab_and_installs_the_package_there(path):
    colab = _colab_tool()
    nb = json.loads(path.read_text())
    badge, setup = ("".join(c["source"]) for c in nb["cells"][:2])
    assert nb["cells"][0]["cell_type"] == "markdown" and nb["cells"][1]["cell_type"] == "code"
    target = colab.student_path(path)  # solutions link to the student version
    assert (REPO / target).exists()
    url = f"https://colab.research.google.com/github/mlcourse/mlcourse/blob/main/{target}"
    assert badge == f"[![Open in Colab]({colab.BADGE_URI})]({url})", "run `make colab`"
    assert setup == colab.setup_source(), "run `make colab`"
    # the book has a launch button instead, and loads nothing from another site
    assert all("remove-cell" in c["metadata"].get("tags", []) for c in nb["cells"][:2])


def test_the_colab_cell_installs_only_on_colab(monkeypatch):
    import subprocess
    import sys
    import types

    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a[0]))
    exec(_colab_tool().setup_source(), {})
    assert calls == []  # not on Colab: nothing happens
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    exec(_colab_tool().setup_source(), {})
    assert calls and calls[0][1:4] == ["-m", "pip", "install"]
    assert calls[0][-1] == "mlcourse @ git+https://github.com/mlcourse/mlcourse@main"
