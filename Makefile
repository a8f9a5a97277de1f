# dinoflow: `make demo` runs the whole platform on the embedded dataset; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

export DO_NOT_TRACK := true
export KEDRO_DISABLE_TELEMETRY := 1
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := False
export KEDRO_LOGGING_CONFIG := conf/logging.yml
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Bytecode is written when a module is first imported, so only what runs gets compiled: compiling
# all 7 GB of dependencies at install time took 37 of the install's 46 s (2 cores). Empty turns off
# an inherited PYTHONDONTWRITEBYTECODE=1, which would make every process compile its imports again.
export PYTHONDONTWRITEBYTECODE :=
# Every target sees the project's tools first, as in an activated virtualenv (DVC stages call kedro).
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install browser demo test test-fast test-faults tune tune-dashboard lint format repro bench bench-quality bench-tuning bench-curation bench-scaling mlflow-ui viz viz-build clean help gpu-check

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed  ## create .venv and install the pinned dependencies (idempotent)

$(VENV)/.installed: pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (dinoflow needs Python 3.11); set PYTHON=..."; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint requirements.lock uv
	@# uv puts the 6.6 GB of wheels in place in about 25 s where pip takes 70 (2 cores), from the
	@# package sources pip is configured with (scripts/pip_config_for_uv.py); pip is the fallback.
	eval "$$($(BIN)/python scripts/pip_config_for_uv.py requirements.lock)" \
	  && $(BIN)/uv pip install --quiet --python $(BIN)/python --editable '.[dev]' \
	  || $(BIN)/python -m pip install --quiet --no-compile --constraint requirements.lock --editable '.[dev]'
	touch $@

demo: install  ## run the default pipeline on the embedded synthetic data (demo preset)
	$(BIN)/kedro run

# One worker per core, a test file per worker at a time (its module fixtures are built once);
# each worker computes on one thread (tests/conftest.py); the 15 slowest tests are listed at the end.
# --no-loadscope-reorder keeps tests/conftest.py's order (longest files first): xdist's default
# reorder by tests per file left the one-test DVC file to run alone at the end.
# On a fresh clone with 2 Intel Xeon (AMX) cores, chromium already installed:
# 429 tests (424 passed, 5 CUDA skips) in 8:47-10:01, 9:42-10:52 with the install (three clean clones);
# 433 tests (428 passed) in 8:47-12:13, 9:35-13:22 with the install (two clean clones an hour apart on
# one machine: 15 and 21 CPU-minutes for the same tests; bf16 GEMM peak 1.5-1.8 TFLOP/s that hour).
# 439 tests (434 passed) in 8:02-8:29, 8:47-9:13 with the install, 14 CPU-minutes (two clean clones;
# bf16 GEMM peak 2.0-2.4 TFLOP/s that day).
# On 2 AMD EPYC (AVX-512) cores, bf16 GEMM peak 0.41 TFLOP/s: 439 tests (434 passed) in 9:50-10:25,
# 10:46-11:38 with the install, 17-18 CPU-minutes (two clean clones); the kill drill 134-139 s, the DVC
# test 108-118 s. Another day, same kind (bf16 peak 0.38-0.41): 8:51 and 11:06, 9:36 and 12:07 with
# the install, 16 and 22 CPU-minutes (two clean clones of the same code 35 minutes apart); the kill
# drill 102 and 130 s, the DVC test 93 and 122 s.
# Without compiling the whole environment at install (AMD EPYC, bf16 peak 0.41-0.42 that session):
# 9:11, 9:27 with the install, 16.6 CPU-minutes, against 9:23 and 10:25 (18.3 CPU-minutes) with it.
test: install browser  ## run the whole test suite, end-to-end `kedro run` included
	$(BIN)/pytest -n auto --dist loadfile --no-loadscope-reorder --durations=15

# The MLflow UI test renders pages in Debian's chromium: installed here when we may (root + apt);
# otherwise that one test is skipped with its reason.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && echo "installing chromium for the MLflow UI browser test" \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "chromium not installed: the MLflow UI browser test will be skipped (apt-get install chromium)"

test-fast: install  ## unit tests only (skips slow end-to-end and multi-process tests)
	$(BIN)/pytest -m "not slow"

test-faults: install  ## the fault-injection suite only (kill -9, SIGTERM, torn writes, outages)
	$(BIN)/pytest -m faults -n auto --dist loadfile --no-loadscope-reorder

lint: install  ## ruff lint + format check
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

format: install
	$(BIN)/ruff check --fix src tests scripts
	$(BIN)/ruff format src tests scripts

bench: install  ## speed against references, and the scaling curves (quick sizes); JSON in benchmarks/results/
	$(BIN)/python -m pip install --quiet --constraint requirements.lock --editable '.[dev,bench]'
	python benchmarks/train_step.py
	python benchmarks/multicrop.py
	python benchmarks/eval.py
	python benchmarks/e2e.py
	python benchmarks/system_metrics.py
	python benchmarks/scaling.py --quick

bench-quality: install  ## real-data quality: Fashion-MNIST, 10-minute budget, lightly reference and supervised ceiling (~45 min)
	$(BIN)/python -m pip install --quiet --constraint requirements.lock --editable '.[dev,bench]'
	python benchmarks/quality.py

bench-tuning: install  ## does tuning pay? the study on Fashion-MNIST with 2-minute proxies, preset vs best at 10 minutes (~2 hours)
	python benchmarks/tuning.py

bench-curation: install  ## curation: planted near-copies found per embedding and threshold, curated vs uncurated pretraining (~25 min)
	python benchmarks/curation.py --pretrain

bench-scaling: install  ## how ingest, the training step, k-NN and features scale with work (quick sizes, ~5 min)
	$(BIN)/python -m pip install --quiet --constraint requirements.lock --editable '.[dev,bench]'
	python benchmarks/scaling.py --quick

gpu-check: install  ## on a machine with an NVIDIA GPU: CUDA tests + GPU train-step benchmark (~5 min)
	bash benchmarks/gpu_check.sh

repro: install  ## re-run the DVC stages whose code, data or parameters changed
	dvc repro
	dvc metrics show

tune: install  ## Optuna study of the teacher temperature/momentum schedules (conf/base/parameters_tune.yml)
	$(BIN)/kedro run --pipelines data_ingestion,data_validation,curate,dataset,tune

tune-dashboard: install  ## watch the tuning study live on http://127.0.0.1:8080
	$(BIN)/optuna-dashboard sqlite:///data/07_model_output/optuna.db --host 127.0.0.1 --port 8080

mlflow-ui: install  ## serve the MLflow UI on http://127.0.0.1:5000 (prints the address of the runs)
	@$(BIN)/python -c "from dinoflow.tracking.mlflow_run import print_ui_address; print_ui_address()"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

# `make serve PORT=5002 MODEL=<name>`: another port or registered model. MLFLOW_TRACKING_URI, when
# set, names the registry (a team server); otherwise the project's mlflow.db.
PORT ?= 5001
MODEL ?= dinoflow-backbone
.PHONY: serve
serve: install  ## serve the registered champion on http://127.0.0.1:5001 (PORT=, MODEL=): images in, embeddings out
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db} \
	  $(BIN)/mlflow models serve -m models:/$(MODEL)@champion --env-manager local --host 127.0.0.1 --port $(PORT)

viz: install  ## serve the Kedro-Viz pipeline picture on http://127.0.0.1:4141
	$(BIN)/kedro viz run --host 127.0.0.1 --no-browser

viz-build: install  ## write the pipeline picture as a static site under build/
	$(BIN)/kedro viz build

clean:  ## remove generated data, runs and caches (keeps .venv)
	git clean -fdXq data
	rm -rf mlruns mlflow.db .pytest_cache build
