# Day-to-day targets. `make setup` once; everything runs from .venv.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test unit integration lint typecheck validate build build-zip bench bench-smoke demo clean

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

# SAM: the CLI lives in .venv-sam (its pins clash with moto's boto3).
SAM ?= $(shell command -v sam || echo .venv-sam/bin/sam)

validate:
	$(SAM) validate --lint

# Full build, copier image included: needs a Docker engine.
build:
	$(SAM) build

# Everything but the copier image: no Docker needed (python3.12 must be on PATH; pyenv users:
# PYENV_VERSION=3.11.7:3.12.1 make build-zip).
build-zip:
	$(SAM) build --exclude CopierImageFunction

# The benchmark (about 15 minutes on 2 cores; not part of the tests). `make bench-smoke`: seconds.
bench: setup
	$(PY) -m bench

bench-smoke:
	$(PY) -m bench --smoke

demo: setup
	$(VENV)/bin/ecr-transfer demo

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache build dist
