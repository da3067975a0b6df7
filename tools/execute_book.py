"""Execute the book's notebooks in parallel, into the cache that Jupyter Book reads.

``jupyter-book build`` executes notebooks one after the other. This script runs them first,
one kernel per CPU core, each kernel on one thread (``OMP_NUM_THREADS=1``: two one-thread
trainings side by side get more done than one two-thread training), and stores the executed
notebooks in ``_build/.jupyter_cache``. The build then finds every notebook there
(``execute_notebooks: cache`` in ``_config.yml``) and only renders. A notebook whose code has
not changed since its last execution is not run again.

Usage: ``python tools/execute_book.py`` from the repository root (``make book`` does it).
``--quick`` executes in quick mode (``MLCOURSE_QUICK=1``) into ``_build/quick/.jupyter_cache``
and writes ``_build/quick/_config.yml`` for that build (``make check-book`` uses it).
"""
from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import yaml
from jupyter_cache import get_cache
from jupyter_cache.executors import load_executor

ROOT = Path(__file__).resolve().parents[1]

# Seconds each notebook took to execute in a full build from a fresh clone on a 2-core CPU (one kernel
# per core; lecture 6 estimated after it stopped sweeping learning rates live); only their order
# matters: the longest start first.
RUN_SECONDS = {"lectures/06_transfer_learning": 420, "lectures/02_metric_learning": 329,
               "lectures/05_learned_optimizers": 204, "lectures/03_maml": 154, "lectures/04_black_box": 146,
               "lectures/08_domain_adaptation": 139, "lectures/07_distillation": 133,
               "lectures/01_few_shot_episodes": 28, "book/map": 10, "book/evidence": 6}


def toc_files() -> list[str]:
    """Every page of ``_toc.yml`` (root first), as paths without suffix."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files: list[str] = [toc["root"]] if "root" in toc else []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return files


def toc_notebooks() -> list[Path]:
    """The notebooks listed in ``_toc.yml``, in book order."""
    return [ROOT / f"{f}.ipynb" for f in toc_files() if (ROOT / f"{f}.ipynb").exists()]


def vendor_mathjax() -> None:
    """Copy MathJax 3 (from the django-static-mathjax package) to _build/vendor/mathjax."""
    import shutil

    import mathjax  # django-static-mathjax: static files only

    source = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    target = ROOT / "_build" / "vendor" / "mathjax" / "es5"
    if not (target / "tex-mml-chtml.js").exists():
        shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("sre", "*-full*.js"))


def quick_config() -> Path:
    """A copy of _config.yml for the quick book (_build/quick): its own execution cache."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["cache"] = str(ROOT / "_build" / "quick" / ".jupyter_cache")
    local = config.get("sphinx", {}).get("local_extensions", {})
    for name, path in local.items():  # resolved against the config file's folder
        local[name] = str(ROOT / path)
    path = ROOT / "_build" / "quick" / "_config.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    vendor_mathjax()
    quick = "--quick" in sys.argv[1:]
    if quick:  # every cell runs, with small budgets: a book to check, not to read
        os.environ["MLCOURSE_QUICK"] = "1"
        cache_dir = Path(yaml.safe_load(quick_config().read_text())["execute"]["cache"])
    else:
        cache_dir = ROOT / "_build" / ".jupyter_cache"
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the kernels inherit it
    # No progress bars in the book: a saved widget needs JavaScript from a CDN (mlcourse.progress).
    os.environ["MLCOURSE_PROGRESS"] = "off"
    notebooks = toc_notebooks()
    cache = get_cache(str(cache_dir))
    # Longest first, so that the pool of workers ends at about the same time: the seconds a
    # notebook took in a measured build (RUN_SECONDS), else the size of its code as a proxy.
    notebooks.sort(key=lambda p: -RUN_SECONDS.get(p.relative_to(ROOT).with_suffix("").as_posix(),
                                                   len(p.read_text()) / 100))
    for nb in notebooks:
        cache.add_nb_to_project(str(nb))
    todo = [r for r in cache.list_project_records() if cache.get_cached_project_nb(r.pk) is None]
    print(f"executing {len(todo)} of {len(notebooks)} notebooks on {os.cpu_count()} workers "
          f"(the others are cached)", flush=True)
    start = time.perf_counter()
    executor = load_executor("local-parallel", cache=cache, logger=logging.getLogger("execute_book"))
    result = executor.run_and_cache(filter_pks=[r.pk for r in todo], timeout=1800, allow_errors=False)
    print(f"executed in {time.perf_counter() - start:.0f} s: {len(result.succeeded)} succeeded, "
          f"{len(result.excepted)} raised, {len(result.errored)} failed to run", flush=True)
    failed = result.excepted + result.errored
    for uri in failed:
        record = cache.get_project_record(uri)
        print(f"\n--- {uri} ---\n{record.traceback or '(no traceback)'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
