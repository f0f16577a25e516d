# Two commands do all set-up on a fresh machine:
#   make demo   — the main job on embedded defaults (SQLite, no Slack)
#   make test   — lint, type check and the whole test suite (starts PostgreSQL and Redis if down)
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup services demo test lint

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: this version resolves to the CPU wheel on disk here, where a bare
	# `torch` requirement would fetch a multi-GB CUDA build. GPU hosts install their own build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[train,dev]"
	touch $@

setup: $(VENV)/.installed

services:
	bash scripts/services.sh

demo: setup
	$(VENV)/bin/ftbot demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: setup services lint
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)
