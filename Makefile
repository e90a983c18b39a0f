# Two entry points on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-fast demo clean-demo

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# Every test, then the 25 slowest (where the suite's time goes).
test: $(STAMP)
	$(PY) -m pytest -q --durations=25

# The tests not marked slow: the quick check while working (see setup.cfg's markers).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" --durations=25

demo: $(STAMP)
	$(PY) -m pipeline.demo

clean-demo:
	rm -rf features/sample features/sample-random runs/demo
