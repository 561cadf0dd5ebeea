# Voicebot — the two commands are `make up` and `make test`; everything else is a piece of them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export VENV
PYTEST_ARGS ?=

# Stamps make installs incremental: they re-run only when what they install changed.
RUNTIME_STAMP := $(VENV)/.stamp-runtime
TEST_STAMP := $(VENV)/.stamp-test
# What the installs read: the projects and the locks (requirements/*.lock, made by `make lock`).
PY_LOCKS := requirements/build.lock requirements/llama-cpp.lock requirements/models-nodeps.lock
PY_INPUTS := pyproject.toml images/triton/pyproject.toml $(PY_LOCKS) scripts/install-python.sh

.PHONY: help up install install-test ui-build test test-lint test-types test-unit test-integration \
        test-ui test-e2e test-chart test-infra test-images tools-integration tools-e2e tools-chart tools-infra \
        bench-models eval-retrieval bench-retrieval bench-voice bench-handsfree eval-answers soak protocol-schema \
        lock pin-weights clean

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

## ---- run ------------------------------------------------------------------------------
up: install ui-build ## install what is needed, start the local stack, ingest docs/, print the URL
	$(BIN)/voicebot up --dev

install: $(RUNTIME_STAMP) ## create .venv with the gateway, the local stack and the models

$(RUNTIME_STAMP): $(PY_INPUTS) requirements/local.lock
	PYTHON=$(PYTHON) scripts/install-python.sh $(VENV) local
	touch $@

install-test: $(TEST_STAMP) ## install also what the tests need

$(TEST_STAMP): $(PY_INPUTS) requirements/test.lock
	PYTHON=$(PYTHON) scripts/install-python.sh $(VENV) local,test
	touch $(RUNTIME_STAMP) $@

ui-build: ## build the UI static export ui/out (served by the gateway); incremental
	@if [ -f ui/package.json ]; then scripts/build-ui.sh build; fi

## ---- test -----------------------------------------------------------------------------
test: install-test ## every tier: lint, types, unit, integration, ui, e2e, chart, infra, images (last: the slowest)
	$(MAKE) test-lint
	$(MAKE) test-types
	$(MAKE) test-unit
	$(MAKE) test-integration
	$(MAKE) test-ui
	$(MAKE) test-e2e
	$(MAKE) test-chart
	$(MAKE) test-infra
	$(MAKE) test-images

test-lint: install-test ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-types: install-test ## mypy, strict on orchestrator/ and ingest/
	$(BIN)/mypy

test-unit: install-test ## unit tests (no external process)
	scripts/pytest-tier unit $(PYTEST_ARGS)

tools-integration: ## espeak-ng and sox for test speech; the eval's foreign corpora (Debian manuals)
	scripts/install-system-deps.sh espeak-ng sox
	scripts/install-eval-corpora.sh build/eval-corpora

test-integration: install-test tools-integration ## against the real Triton and embedded Postgres
	scripts/pytest-tier integration $(PYTEST_ARGS)

tools-e2e: tools-integration ## Debian's chromium, unless VOICEBOT_E2E_CHROMIUM names a browser already there
	@if [ -x "$${VOICEBOT_E2E_CHROMIUM:-}" ]; then echo "==> e2e browser: $$VOICEBOT_E2E_CHROMIUM"; \
	else scripts/install-system-deps.sh chromium fonts-dejavu-core; fi

test-ui: ## the UI: eslint, tsc --noEmit, vitest (audio framing, protocol client, player)
	scripts/build-ui.sh check

test-e2e: install-test tools-e2e ui-build ## the whole stack through a real Chromium -> build/e2e/
	scripts/pytest-tier e2e $(PYTEST_ARGS)

tools-chart:
	scripts/install-chart-tools.sh

test-chart: install-test tools-chart ## helm lint/template, schemas, policies, alert rules
	scripts/pytest-tier chart $(PYTEST_ARGS)

tools-infra:
	scripts/install-infra-tools.sh

test-infra: install-test tools-infra ## terraform, Dockerfiles, workflows
	scripts/pytest-tier infra $(PYTEST_ARGS)

test-images: install-test tools-chart tools-integration ## build the images with podman, run the chart's CPU scenario, answer a spoken turn -> build/images/report.json
	scripts/images/build.sh
	scripts/pytest-tier images $(PYTEST_ARGS)

## ---- measure ----------------------------------------------------------------------------
bench-models: install-test tools-integration ## model latency through Triton vs in-process -> build/bench/models.json
	$(BIN)/python -m tests.bench.bench_models

eval-retrieval: install-test ## retrieval quality on the docs eval set -> build/bench/retrieval.json
	$(BIN)/python -m tests.bench.eval_retrieval

bench-retrieval: install-test ## pgvector latency/recall at scale -> build/bench/retrieval-scale.json
	$(BIN)/python -m tests.bench.bench_retrieval

bench-voice: install-test tools-integration ## voice turns vs their physical limit, speculation on and off -> build/bench/voice.json, voice-waterfall.svg
	$(BIN)/python -m tests.bench.bench_voice $(BENCH_ARGS)
	$(BIN)/python -m tests.bench.waterfall

bench-handsfree: install-test tools-integration ## hands-free turn taking, offline replay then real time over the WebSocket: cut-offs, false turns, echo, barge-ins -> build/bench/handsfree.json
	$(BIN)/python -m tests.bench.bench_handsfree $(BENCH_ARGS)
	$(BIN)/python -m tests.bench.bench_handsfree_live

SOAK_ARGS ?=
soak: install-test tools-integration ## 20 voice sessions for 30 minutes with barge-ins, uploads and a Triton restart (SOAK_ARGS='--minutes 2 --sessions 4') -> build/bench/soak.json
	$(BIN)/python -m tests.bench.soak $(SOAK_ARGS)

EVAL_ARGS ?=
eval-answers: install-test tools-integration ## answer quality on two foreign corpora, typed and spoken -> build/bench/answers.json
	$(BIN)/python -m tests.bench.eval_answers $(EVAL_ARGS)

lock: install-test ## regenerate the hash-pinned locks requirements/*.lock from pyproject.toml and requirements/*.txt (needs the index)
	scripts/lock.sh

pin-weights: install ## print the commit and sha256 pins of the manifest's unpinned hub sources (needs the hub; docs/models.md)
	$(BIN)/voicebot-models pin $(WEIGHTS)

protocol-schema: install ## regenerate docs/protocol.schema.json from orchestrator/protocol.py
	$(BIN)/python -m orchestrator.protocol > docs/protocol.schema.json

clean: ## remove the venv, tools and build outputs (keeps .voicebot/ state and the wheel cache)
	rm -rf $(VENV) .tools build
