# The two Quick-start commands: `make demo` and `make test`. Both set everything up first (idempotent).
# `make test` (what .ci/run calls) lints first: ruff, mypy (strict on storage/ and curation/), deptry.
.PHONY: setup demo lint test test-fast bench clean-demo

VENV := .venv
RECOT := $(VENV)/bin/recot
PYTEST := $(VENV)/bin/python -m pytest

setup:
	@bash scripts/setup.sh

demo: setup
	$(RECOT) demo --workspace ./recot-data

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/deptry storage synth curation trainers ui

test: setup lint
	$(PYTEST) -q --durations=15

test-fast: setup
	$(PYTEST) -q -m "not slow and not argilla and not browser"

bench: setup
	$(VENV)/bin/python benchmarks/curation.py
	$(VENV)/bin/python benchmarks/sids.py
	$(VENV)/bin/python benchmarks/teacher.py
