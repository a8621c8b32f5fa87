# The two commands the README shows: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LIBS := cachebus

.PHONY: test lint typecheck pytest demo clean test-repeat

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy --strict $(LIBS) examples

pytest: $(VENV)/.installed
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

demo: $(VENV)/.installed
	$(VENV)/bin/cachebus demo $(DEMO_ARGS)

# Proof of determinism: N whole CI runs from a clean clone (HOG=1: beside a CPU hog).
test-repeat:
	N=$(or $(N),5) HOG=$(or $(HOG),0) bash .ci/repeat

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
