# ragsync: `make demo` to see it work, `make test` to check it. Both create .venv and install on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install tools demo bench test test-unit test-integration lint docs docs-reference proto clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned to the CPU build on this machine's disk; otherwise pip pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Node packages for the dashboard and KEDA checks (skipped by the tests when npm is missing).
deploy/checks/node_modules: deploy/checks/package-lock.json
	if command -v npm >/dev/null; then npm ci --prefix deploy/checks --no-audit --no-fund --silent; fi

tools: deploy/checks/node_modules

demo: install
	$(VENV)/bin/ragsync demo

# Benchmarks are not tests: they print a table against the raw model and write benchmarks/results/.
bench: install
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m benchmarks.run $(BENCH_ARGS)

test: install tools lint docs
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

test-integration: install
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m tests.typecheck ragsync streams producers proto tests benchmarks

# The docs site (docs/, mkdocs.yml), built offline: warnings are errors. Output in site/.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# The reference pages generated from the code: docs/configuration.md (Settings), docs/cli.md (the typer app) and
# docs/layout.md (the modules' docstrings).
# A unit test fails when the committed pages differ from what this writes.
docs-reference: install
	$(PY) docs/gen_reference.py

proto: install
	$(PY) -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. ragsync/proto/coordinator.proto

clean:
	rm -rf $(VENV) data site .pytest_cache .mypy_cache .ruff_cache deploy/checks/node_modules
