# Two commands set everything up on a fresh machine: `make book` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install book test test-unit test-notebooks lab kernel exercises colab data clean bench

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

test: test-unit test-notebooks

test-unit: $(STAMP)
	MLCOURSE_QUICK=1 $(BIN)/python -m pytest tests

# Every lecture and instructor notebook, executed in quick mode.
test-notebooks: $(STAMP)
	MLCOURSE_QUICK=1 $(BIN)/python -m pytest --nbval-lax -p no:cacheprovider lectures solutions

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

# Speed and memory against reference implementations (not part of the tests).
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt easyfsl==1.5.0
	$(BIN)/python benchmarks/metric.py
	$(BIN)/python benchmarks/maml.py
