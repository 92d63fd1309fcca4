# make help lists the targets. Everything runs inside the pipenv environment in .venv/.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
# pipenv resolves against ${PIP_INDEX_URL} (see Pipfile); default to pip's own index.
export PIP_INDEX_URL ?= $(shell $(PYTHON) -c 'from pip._internal.models.index import PyPI; print(PyPI.simple_url)')
export PIPENV_VENV_IN_PROJECT := 1
export PIPENV_YES := 1
# Prefect's local server would otherwise phone home at every start.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
# Real TLC files for make demo and the extra tests, when a folder of them is at hand.
TLC_DATA_DIR ?= $(firstword $(wildcard data ../shared/data/tlc))
export TLC_DATA_DIR
VENV := .venv
RUN := $(VENV)/bin/python

.PHONY: help install demo server server-stop test test-unit lint format bench bench-web bench-stream image clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create .venv from Pipfile.lock (pipenv install --dev --deploy)

$(VENV)/.installed: Pipfile Pipfile.lock
	@command -v pipenv >/dev/null || $(PYTHON) -m pip install --quiet pipenv
	$(PYTHON) -m pipenv install --dev --deploy
	@touch $@

demo: install ## train a model into ./mlflow.db and score green 2021-03 into ./output
	@template="$${INPUT_URI_TEMPLATE:-}"; \
	if [ -z "$$template" ] && [ -n "$(TLC_DATA_DIR)" ] && [ -f "$(TLC_DATA_DIR)/green_tripdata_2021-01.parquet" ]; then \
	  template="$(TLC_DATA_DIR)/{taxi_type}_tripdata_{year:04d}-{month:02d}.parquet"; fi; \
	export INPUT_URI_TEMPLATE="$${template:-}"; [ -n "$$template" ] || unset INPUT_URI_TEMPLATE; \
	echo "== trips from $${template:-the public TLC files}"; \
	echo "== python train.py green 2021 1"; $(RUN) train.py green 2021 1; \
	echo "== python score.py green 2021 3"; $(RUN) score.py green 2021 3; \
	echo "== predictions:"; find output -name '*.parquet' | sort

server: install ## start the local Prefect server (UI at http://127.0.0.1:4200) unless one answers
	$(RUN) -m ride_duration.prefect_server

server-stop: install ## stop the local Prefect server (prefect server stop)
	$(VENV)/bin/prefect server stop

test: install ## run every test: unit, then integration against real servers
	$(RUN) -m pytest

test-unit: install ## run the fast unit tests only
	$(RUN) -m pytest -m "not integration"

lint: install ## ruff lint and format check, hadolint on the Dockerfile
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint Dockerfile

format: install ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install ## benchmark a 3M-row month and whole commands beside the course's; RESULTS.md
	$(RUN) benchmarks/bench.py --rows 3000000 --results benchmarks/RESULTS.md
	$(RUN) benchmarks/bench_process.py --rounds 3 --results benchmarks/RESULTS.md

bench-web: install ## benchmark the web service beside the course's; writes benchmarks/RESULTS.md
	$(RUN) benchmarks/bench_web.py --requests 2000 --clients 8 --results benchmarks/RESULTS.md

bench-stream: install ## benchmark the stream handler beside the course's Lambda; RESULTS.md
	$(RUN) benchmarks/bench_stream.py --results benchmarks/RESULTS.md

image: ## build the worker image ride-duration:latest (needs a Docker engine)
	docker build --build-arg PIP_INDEX_URL="$$PIP_INDEX_URL" -t ride-duration:latest .

clean: ## remove local state: mlflow.db, mlruns/, output/
	rm -rf mlflow.db mlruns mlartifacts output
