# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv with the pinned environment first (idempotent).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
TFF := tensorflow-federated==0.87.0
export TF_CPP_MIN_LOG_LEVEL ?= 2
DEMO_DIR ?= demo_output

.PHONY: all setup demo test test-fast clean check-python

all: test

check-python:
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if (3, 11) <= v[:2] < (3, 12) else 1)' || \
	  { echo "error: $(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'); this toolkit needs Python 3.11 (TensorFlow Federated 0.87 requires < 3.12, TF 2.14 wheels need >= 3.9). Install 3.11 and run: make PYTHON=python3.11 $(MAKECMDGOALS)"; exit 1; }

$(VENV)/.installed: requirements.lock setup.py | check-python
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps $(TFF)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@$(PY) -m pip check | grep -v 'jaxlib==0.4.14' | grep . && { echo "error: pip check found problems beyond TFF's jaxlib pin"; exit 1; } || true
	@touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m benchmarks.demo_main --out_dir $(DEMO_DIR)

test: setup
	$(PY) -m pytest -q tests

test-fast: setup
	$(PY) -m pytest -q -m "not slow" tests

clean:
	rm -rf $(VENV) $(DEMO_DIR) build *.egg-info .pytest_cache
