"""Put an "Open in Colab" badge and a Colab install cell at the top of every notebook.

Every lecture (``lectures/``) and exercise notebook starts with two cells:

1. a Markdown cell with Colab's badge, a link that opens the notebook from the repository
   on Colab (students open ``exercises/``, so the instructor notebooks in ``solutions/`` link
   to their student version);
2. a code cell that installs ``mlcourse`` from the repository when it runs on Colab and does
   nothing anywhere else.

The repository's address and branch come from ``_config.yml`` (``repository:``). Running
this script again replaces the two cells, so it is safe after a change of address; run
``make exercises`` afterwards to regenerate the student notebooks. ``tests/test_notebooks.py``
checks that every notebook has both cells, as written here.

Usage: ``python tools/colab.py`` (``make colab``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
BADGE_ID, SETUP_ID = "colab-badge", "colab-setup"
# Colab's own badge: it shows on GitHub, in Colab and in JupyterLab (offline, its alt text is
# the link). The book drops both cells (tag remove-cell): its pages have a launch button, and
# must not load an image from another site.
BADGE_URI = "https://colab.research.google.com/assets/colab-badge.svg"
TAGS = ["remove-cell"]


def repository() -> tuple[str, str]:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    return config["url"].rstrip("/"), config.get("branch", "main")


def colab_url(relpath: str) -> str:
    url, branch = repository()
    return f"https://colab.research.google.com/github/{url.split('github.com/')[1]}/blob/{branch}/{relpath}"


def badge_source(relpath: str) -> str:
    return f"[![Open in Colab]({BADGE_URI})]({colab_url(relpath)})"


def setup_source() -> str:
    url, branch = repository()
    return ("# On Colab, install the course package first (this cell does nothing anywhere else).\n"
            "import sys\n\n"
            "if \"google.colab\" in sys.modules:\n"
            "    import subprocess\n\n"
            "    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"--quiet\",\n"
            f"                    \"mlcourse @ git+{url}@{branch}\"], check=True)")


def student_path(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return str(Path("exercises", rel.name)) if rel.parts[0] == "solutions" else str(rel)


def _locked(gid: str) -> dict:
    return {"nbgrader": {"grade": False, "grade_id": gid, "locked": True, "schema_version": 3,
                         "solution": False, "task": False}}


def add_cells(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    graded = path.relative_to(ROOT).parts[0] == "solutions"
    keep = [c for c in nb.cells if c.get("metadata", {}).get("mlcourse") not in (BADGE_ID, SETUP_ID)
            and c.get("metadata", {}).get("nbgrader", {}).get("grade_id") not in (BADGE_ID, SETUP_ID)]
    badge = nbformat.v4.new_markdown_cell(badge_source(student_path(path)))
    setup = nbformat.v4.new_code_cell(setup_source())
    for cell, gid in ((badge, BADGE_ID), (setup, SETUP_ID)):
        cell.metadata = _locked(gid) if graded else {"mlcourse": gid}
        cell.metadata["tags"] = list(TAGS)
        cell.id = gid
    nb.cells = [badge, setup] + keep
    nbformat.write(nb, path)


def main() -> int:
    for path in (sorted(ROOT.glob("lectures/*.ipynb")) + sorted(ROOT.glob("book/*.ipynb"))
                 + sorted(ROOT.glob("solutions/*.ipynb"))):
        add_cells(path)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
