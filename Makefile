# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv with the pinned environment first (idempotent).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
TFF := tensorflow-federated==0.87.0
export TF_CPP_MIN_LOG_LEVEL ?= 2
DEMO_DIR ?= demo_output

.PHONY: all setup demo test test-fast system-tools clean check-python

all: test

check-python:
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if (3, 11) <= v[:2] < (3, 12) else 1)' 2>/dev/null || \
	  { echo "error: '$(PYTHON)' is $$($(PYTHON) --version 2>&1 || echo 'not a working Python'); this toolkit needs Python 3.11 (TensorFlow Federated 0.87 requires < 3.12 and requirements.lock is pinned for 3.11). Install Python 3.11 and run: make PYTHON=/path/to/python3.11 $(MAKECMDGOALS)"; exit 1; }

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

# System tools some tests need, from Debian's packages when run as root:
# kotlin + junit4 (the app's pure-JVM library is compiled and unit-tested) and
# qemu-user-static + the arm64 architecture (exported models run on ARM64
# kernels under emulation). Without root/apt those tests are skipped.
SYSTEM_PACKAGES := kotlin junit4 qemu-user-static

test: setup system-tools
	bash android_demo/jvm-test.sh
	$(PY) -m benchmarks --setup_arm64 || echo "ARM64 set-up failed; its test will be skipped"
	$(PY) -m pytest -q tests

system-tools:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64; \
	  missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  { apt-get update -qq && { [ -z "$$missing" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; }; } \
	    || echo "system-tools: apt failed; JVM and ARM64 tests may be skipped"; \
	else echo "system-tools: not root or no apt-get; JVM and ARM64 tests will be skipped"; fi

test-fast: setup
	$(PY) -m pytest -q -m "not slow" tests

clean:
	rm -rf $(VENV) $(DEMO_DIR) build *.egg-info .pytest_cache
