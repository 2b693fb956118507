# The README's two commands: `make demo` and `make test`. Both install exactly the versions in uv.lock.
#   make demo        core datakit only (no torch) into .venv, then build + verify + draw the embedded sample
#   make test        the test extras into .venv, then lint (ruff, import layers, mypy baseline) and the whole suite
#   make test-fast   the same without the tests marked slow (day-to-day work; CI runs everything)
#   make lock        refresh uv.lock after changing dependencies in pyproject.toml
#   make check-lowest  core install at the lowest versions pyproject.toml allows, then demo + core tests
PYTHON ?= python3
VENV ?= .venv
TOOLS ?= .venv-tools
UV_VERSION := 0.13.9
UV := $(TOOLS)/bin/uv
PYTEST_ARGS ?=
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
export UV_PYTHON := $(PYTHON)

.PHONY: demo test test-fast lint lock check-lowest bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"

# --inexact: a developer's test extras stay installed; on a fresh clone this is the core and nothing else
demo: | $(UV)
	$(UV) sync --frozen --no-dev --inexact
	$(VENV)/bin/datakit demo --out demo-out

sync-test: | $(UV)
	$(UV) sync --frozen --extra test

lint: sync-test
	$(VENV)/bin/ruff check datakit tests benchmarks
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python tools/mypy_baseline.py

test: lint
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

test-fast: lint
	$(VENV)/bin/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

lock: | $(UV)
	$(UV) lock

# lowest-direct: every direct dependency at its lower bound (transitive ones at their newest)
check-lowest: | $(UV)
	rm -rf .venv-lowest && $(PYTHON) -m venv .venv-lowest
	$(UV) pip install -q --python .venv-lowest/bin/python --resolution lowest-direct -e . "pytest>=8" "pytest-timeout>=2.3"
	rm -rf demo-lowest && .venv-lowest/bin/datakit demo --out demo-lowest
	.venv-lowest/bin/python -m pytest -q -p no:cacheprovider -m "not slow" \
	  tests/test_build.py tests/test_codecs.py tests/test_cli_data.py tests/test_convert_*.py tests/test_imagenets_*.py

bench: sync-test
	$(VENV)/bin/python benchmarks/bench_writer.py

clean:
	rm -rf demo-out demo-lowest .venv-lowest .pytest_cache
