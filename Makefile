# Day-to-day targets. `make setup` once; everything runs from .venv.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test unit integration lint typecheck validate build bench demo clean

setup:
	./scripts/bootstrap.sh

test: setup
	$(PY) -m pytest -q

unit:
	$(PY) -m pytest -q tests/unit

integration:
	$(PY) -m pytest -q tests/integration

lint:
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck:
	$(VENV)/bin/mypy src

demo: setup
	$(VENV)/bin/ecr-transfer demo

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache build dist
