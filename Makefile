# Two entry points that work on a fresh clone with only Python 3:
#   make demo   - the main job
#   make test   - the whole test suite
# Each creates its own virtual environment (.venv) on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build of torch (on this project's machines `torch==2.13.0` is a CPU wheel on local disk).
TORCH_SPEC ?= torch==2.13.0
# two workers: the suite is mostly single-threaded Python (loop references, hypothesis)
PYTEST_ARGS ?= -n 2

.PHONY: demo test test-triton lint docs bench clean

# the virtual environment with a CPU build of torch
$(VENV)/.base:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	touch $@

# what the demo needs
$(VENV)/.demo-installed: $(VENV)/.base pyproject.toml
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[demo]"
	touch $@

# everything the test suite exercises (fast CPU backend, Triton interpreter, ONNX, demos, docs)
$(VENV)/.installed: $(VENV)/.base pyproject.toml
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test,demo,docs]"
	touch $@

demo: $(VENV)/.demo-installed
	$(PY) -m torchcorr demo

test: $(VENV)/.installed
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest $(PYTEST_ARGS)
	$(MAKE) test-triton

# Triton kernels on the CPU through Triton's interpreter, in their own process (TRITON_INTERPRET
# must be set before the kernels are imported, and must not leak into the other tests).
test-triton: $(VENV)/.installed
	TRITON_INTERPRET=1 $(PY) -m pytest -m triton tests/triton_backend $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

docs: $(VENV)/.installed
	$(PY) -m mkdocs build --strict

bench: $(VENV)/.installed
	$(PY) -m torchcorr bench

clean:
	rm -rf $(VENV) build dist .pytest_cache .hypothesis
