# Two commands set everything up on a fresh machine: `make book` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# `make test` runs its tests on every core, one thread each (JOBS=1 runs them one after the other)
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)


.PHONY: install book check-book browser sandbox test test-unit test-slow test-notebooks lab kernel exercises colab data clean bench load-test

install: $(STAMP)

# The virtual environment, with pinned versions for reproducible builds (constraints.txt).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# Notebooks run in parallel into _build/.jupyter_cache first (full budgets, never quick mode);
# the build then renders them from the cache.
book: $(STAMP)
	MLCOURSE_QUICK=0 $(BIN)/python tools/execute_book.py
	MLCOURSE_QUICK=0 $(BIN)/jupyter-book build . -W -n --keep-going
	@echo
	@echo "The book is built. Open: file://$(CURDIR)/_build/html/index.html"

# The book as a reader's browser shows it: every page of a quick build (every cell runs with
# small budgets) opened in headless Chromium (tools/check_book.py): no console errors, no
# request to another host, math typeset, figures loaded; screenshots in _build/screenshots.
# `make check-book HTML=_build/html` checks the full book of `make book` instead.
HTML ?= _build/quick/_build/html
check-book: $(STAMP) browser
	@if [ "$(HTML)" = "_build/quick/_build/html" ]; then \
	  $(BIN)/python tools/execute_book.py --quick && \
	  MLCOURSE_QUICK=1 $(BIN)/jupyter-book build . --path-output _build/quick --config _build/quick/_config.yml \
	    -W -n --keep-going; fi
	$(BIN)/python tools/check_book.py $(HTML) --screenshots _build/screenshots

# Debian's Chromium (Playwright drives it; no browser is downloaded).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q chromium; \
	  else sudo apt-get update -q && sudo apt-get install -y -q chromium; fi; }

test: sandbox test-unit test-notebooks

# Debian's bubblewrap, the grading kernels' sandbox (without it, root grades in a mount namespace).
sandbox:
	@command -v bwrap >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -q bubblewrap || { apt-get update -q && apt-get install -y -q bubblewrap; }; \
	  else sudo -n apt-get install -y -q bubblewrap; fi; } || echo "bubblewrap not installed: kernels are graded without it"

# Unit tests (every spec trained at a quick budget, shipped records checked against their weights);
# the tests marked slow (learning above chance on a fixed seed, class-scale grading) are `make test-slow`.
test-unit: $(STAMP)
	MLCOURSE_QUICK=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(JOBS) -m "not slow" tests

test-slow: $(STAMP)
	MLCOURSE_QUICK=1 $(BIN)/python -m pytest -m slow tests

# Every lecture and instructor notebook, the evidence page and the map, executed in quick mode.
test-notebooks: $(STAMP)
	MLCOURSE_QUICK=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(JOBS) --dist loadscope --nbval-lax \
	  -p no:cacheprovider lectures solutions book/evidence.ipynb book/map.ipynb

# JupyterLab on the repository; the course environment is also registered as the kernel
# "Python (mlcourse)" for the user, so that any other Jupyter can run the notebooks with it.
lab: kernel
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root,)

kernel: $(STAMP)
	$(BIN)/python -m ipykernel install --user --name mlcourse --display-name "Python (mlcourse)"

exercises: $(STAMP)
	$(BIN)/mlcourse exercises

# The "Open in Colab" badge and install cell of every notebook, from _config.yml's repository.
colab: $(STAMP)
	$(BIN)/python tools/colab.py
	$(BIN)/mlcourse exercises

data: $(STAMP)
	$(BIN)/mlcourse data

clean:
	rm -rf _build .pytest_cache

# Speed and memory against real libraries (easyfsl; higher and torchopt beside a learn2learn-style
# loop), how close Conv4 runs to the matmul peak, and meta-training on 1 and 2 processes (not tests).
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt easyfsl==1.5.0 higher==0.2.1 torchopt==0.7.3
	$(BIN)/python benchmarks/metric.py
	$(BIN)/python benchmarks/maml.py
	$(BIN)/python benchmarks/allocator.py
	$(BIN)/python benchmarks/flops.py
	$(BIN)/python benchmarks/distributed.py --procs 1 2

# Grading at class scale: 1,000 generated submissions (correct, wrong, looping, broken, attacks, ...)
# as 4 parallel shards, one killed and rerun, merged and compared with a single run.
load-test: $(STAMP)
	$(BIN)/python benchmarks/grading_load.py --n 1000
