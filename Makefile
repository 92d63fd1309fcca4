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
# Real TLC files for make demo and the extra tests, when a folder of them is at hand. Absolute,
# so that commands run from other folders (the tests run many) find the same files.
TLC_DATA_DIR ?= $(firstword $(wildcard data ../shared/data/tlc))
override TLC_DATA_DIR := $(if $(TLC_DATA_DIR),$(abspath $(TLC_DATA_DIR)))
export TLC_DATA_DIR
# Integration tests run on this many pytest-xdist workers (each with servers of its own).
TEST_WORKERS ?= 2
VENV := .venv
RUN := $(VENV)/bin/python
# The serving install (web service, Lambda, stream consumer with a compiled model): pyproject's
# serving requirements at the lock's versions (numpy, flask, gunicorn, boto3, awslambdaric,
# prometheus-client) and the package, editable. The tests run the online modes from it.
SERVING_VENV ?= .venv-serving
override SERVING_VENV := $(abspath $(SERVING_VENV))
export SERVING_VENV
# What the serving role runs, byte-compiled when it is installed (the image does the same).
SERVING_CODE := ride_duration predict.py gunicorn.conf.py lambda_function.py stream.py

.PHONY: help install serving-env demo template server server-stop test test-unit test-integration lint format docs bench \
	bench-web bench-stream bench-status bench-serving image image-serving clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' \
	  '{ name[NR] = $$1; text[NR] = $$2; if (length($$1) > width) width = length($$1) } \
	   END { for (i = 1; i <= NR; i++) printf "  make %s  %s\n", sprintf("%-" width "s", name[i]), text[i] }'

install: $(VENV)/.installed ## create .venv from Pipfile.lock (pipenv install --dev --deploy)

$(VENV)/.installed: Pipfile Pipfile.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null || { \
	  echo "make: the environment needs Python 3.11, and $(PYTHON) is $$($(PYTHON) -V 2>&1):" \
	    "run make with PYTHON=python3.11 (or the path of a Python 3.11)" >&2; exit 2; }
	@$(PYTHON) -m pipenv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet pipenv
	$(PYTHON) -m pipenv install --dev --deploy
	@# The package itself, in place, with its console scripts (ride-duration-score, ...); its
	@# dependencies are the lock's, installed above.
	PYTHONWARNINGS="ignore:Editable installation" \
	  $(RUN) -m pip install --quiet --no-deps --no-build-isolation --editable .
	@touch $@

serving-env: $(SERVING_VENV)/.installed ## the serving install in SERVING_VENV (.venv-serving)
	@$(SERVING_VENV)/bin/python -m compileall -q $(SERVING_CODE)

$(SERVING_VENV)/.installed: Pipfile.lock pyproject.toml scripts/install_serving.py
	$(PYTHON) scripts/install_serving.py --venv $(SERVING_VENV)
	@touch $@

# The trip files make demo reads: INPUT_URI_TEMPLATE, else TLC_DATA_DIR's when it holds the
# demo's months, else the TLC's public files (the settings' default).
TEMPLATE := $(or $(INPUT_URI_TEMPLATE),$(if $(wildcard $(TLC_DATA_DIR)/green_tripdata_2021-01.parquet),$(TLC_DATA_DIR)/{taxi_type}_tripdata_{year:04d}-{month:02d}.parquet))

demo: install ## train a model into ./mlflow.db and score green 2021-03 into ./output
	@export INPUT_URI_TEMPLATE='$(TEMPLATE)'; [ -n "$$INPUT_URI_TEMPLATE" ] || unset INPUT_URI_TEMPLATE; \
	echo "== trips from $${INPUT_URI_TEMPLATE:-the public TLC files}"; \
	echo "== python train.py green 2021 1"; $(RUN) train.py green 2021 1; \
	echo "== python score.py green 2021 3"; $(RUN) score.py green 2021 3; \
	echo "== predictions (the current set of each month; every version's under output/_versions):"; \
	find output -name predictions.parquet -not -path 'output/_*' | sort

template: ## print the trip file template make demo reads (for INPUT_URI_TEMPLATE)
	@echo '$(or $(TEMPLATE),$(shell $(RUN) -c 'from ride_duration.core.settings import Settings; print(Settings().input_uri_template)'))'

server: install ## start the local Prefect server (UI at http://127.0.0.1:4200) unless one answers
	$(RUN) -m ride_duration.orchestration.server

server-stop: install ## stop the local Prefect server (prefect server stop)
	$(VENV)/bin/prefect server stop

test: lint test-unit test-integration ## lint, unit tests, then integration tests (stops at the first failure)

test-unit: install ## run the fast unit tests only
	$(RUN) -m pytest -m "not integration"

test-integration: install serving-env ## run the integration tests against real servers, on TEST_WORKERS workers
	$(RUN) -m pytest -m integration -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

lint: install ## ruff lint and format check, mypy (strict) on the package, hadolint on the Dockerfile
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/hadolint Dockerfile

format: install ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

docs: install ## regenerate docs/: the settings table, and the sample manifest from make demo's output
	$(RUN) docs/generate.py

bench: install ## benchmark a 3M-row month and whole commands beside the course's; RESULTS.md
	$(RUN) benchmarks/bench.py --rows 3000000 --results benchmarks/RESULTS.md
	$(RUN) benchmarks/bench_process.py --rounds 3 --results benchmarks/RESULTS.md

bench-web: install ## benchmark the web service beside the course's; writes benchmarks/RESULTS.md
	$(RUN) benchmarks/bench_web.py --requests 2000 --clients 8 --results benchmarks/RESULTS.md

bench-stream: install ## benchmark the stream handler beside the course's Lambda; RESULTS.md
	$(RUN) benchmarks/bench_stream.py --results benchmarks/RESULTS.md

bench-status: install ## time backfill.py --status over 600 months, local, HTTP and S3; RESULTS.md
	$(RUN) benchmarks/bench_status.py --rounds 3 --results benchmarks/RESULTS.md

# What the serving benchmark compares with: main before the serving install.
SERVING_BASELINE ?= 9f32c59

bench-serving: install serving-env ## benchmark the serving install beside the full one; RESULTS.md
	$(RUN) benchmarks/bench_serving.py --before $(SERVING_BASELINE) --results benchmarks/RESULTS.md

image: ## build the image ride-duration:latest (needs a Docker engine)
	docker build --build-arg PIP_INDEX_URL="$$PIP_INDEX_URL" \
	  --build-arg CODE_VERSION="git:$$(git rev-parse --short=12 HEAD)" -t ride-duration:latest .

image-serving: ## build the serving image ride-duration-serving:latest (needs a Docker engine)
	docker build --target serving --build-arg PIP_INDEX_URL="$$PIP_INDEX_URL" \
	  --build-arg CODE_VERSION="git:$$(git rev-parse --short=12 HEAD)" \
	  -t ride-duration-serving:latest .

clean: ## remove local state: mlflow.db, mlruns/, output/
	rm -rf mlflow.db mlruns mlartifacts output
