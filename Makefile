# Two entry points for a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
PYTEST_ARGS ?=

.PHONY: demo test bench clean

$(PY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip uv

$(VENV)/.core: pyproject.toml | $(PY)
	$(UV) pip install --python $(PY) -e .
	touch $@

$(VENV)/.test: pyproject.toml | $(PY)
	$(UV) pip install --python $(PY) -e ".[test]"
	touch $@ $(VENV)/.core

demo: $(VENV)/.core
	$(VENV)/bin/datakit demo --out demo-out

test: $(VENV)/.test
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(VENV)/.test
	$(PY) benchmarks/bench_writer.py

clean:
	rm -rf demo-out .pytest_cache
