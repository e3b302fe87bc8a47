# returnsync developer commands. The README names these targets; CI runs `make lint`, then `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8

export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export DBT_SEND_ANONYMOUS_USAGE_STATS := False
export GX_ANALYTICS_ENABLED := False

# Small demo landscape for `make run` when data/landing is empty.
DEMO_RETURNS ?= 200
DEMO_SEED ?= 7

.PHONY: help install run test fuzz dev lint lint-sql format format-sql lock bench docs clean erp erp-install erp-db erp-lock kafka kafka-start kafka-stop mutants stack-up stack-down demo

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# The environment, from the lock file; re-synced whenever pyproject.toml or the lock change.
# --compile-bytecode: uv writes no .pyc by default, and with PYTHONDONTWRITEBYTECODE set (as on
# this machine) Python never writes them either, so every process compiled every module it
# imported: 1.7 s of each dbt start, 1 s of each Dagster start, 0.3 s of each Kafka fetcher.
$(BIN)/.installed: pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync -q --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $@

install: $(BIN)/.installed ## Create or update the virtual environment (.venv)

$(DAGSTER_HOME)/dagster.yaml:
	@mkdir -p $(DAGSTER_HOME)
	@printf 'telemetry:\n  enabled: false\nnux:\n  enabled: false\ncompute_logs:\n  module: dagster._core.storage.noop_compute_log_manager\n  class: NoOpComputeLogManager\nevent_log_storage:\n  module: pipelines.eventlog\n  class: ReturnsyncEventLogStorage\n  config:\n    base_dir: "%s/history/runs"\n' "$(abspath $(DAGSTER_HOME))" > $@

run: install $(DAGSTER_HOME)/dagster.yaml ## Run the main job on the embedded default (data/), simulating a landscape if data/landing is empty
	@if [ -z "$$(ls -A data/landing 2>/dev/null)" ] && $(BIN)/returnsync simulate --help >/dev/null 2>&1; then \
		$(BIN)/returnsync simulate --returns $(DEMO_RETURNS) --seed $(DEMO_SEED) --out data/landing; \
	fi
	@mkdir -p data/landing
	$(BIN)/returnsync run --quiet

test: install erp-db $(DAGSTER_HOME)/dagster.yaml ## Run the whole test suite (starts and stops the servers it needs)
	@bash scripts/system-packages.sh
	$(BIN)/returnsync prepare
	$(BIN)/pytest

fuzz: install ## The property-based tests (tests/fuzz/) with the long hypothesis profile
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -p no:cacheprovider tests/fuzz/

mutants: install erp-db $(DAGSTER_HOME)/dagster.yaml ## Break each fixed test's behaviour (tests/mutants/*.patch) in a scratch copy; each test must fail
	@bash scripts/system-packages.sh
	$(BIN)/python tests/mutants/run.py

dev: install $(DAGSTER_HOME)/dagster.yaml ## Dagster UI on http://127.0.0.1:3000
	$(BIN)/returnsync prepare
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

kafka: ## Apache Kafka 4.1 (KRaft, one node) on 127.0.0.1:9092 in the foreground; Ctrl-C stops it
	@bash scripts/system-packages.sh
	$(PYTHON) scripts/kafka/broker.py run

kafka-start: ## The same broker in the background (data in .cache/kafka/dev)
	@bash scripts/system-packages.sh
	$(PYTHON) scripts/kafka/broker.py start

kafka-stop: ## Stop the background broker
	$(PYTHON) scripts/kafka/broker.py stop

# The Tryton ERP is a separate real server with its own environment (erp/README.md).
.venv-erp/.installed: erp/requirements.lock
	@test -x .venv-erp/bin/python || $(PYTHON) -m venv .venv-erp
	@.venv-erp/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	.venv-erp/bin/uv pip sync -q --compile-bytecode --python .venv-erp/bin/python erp/requirements.lock
	@touch $@

erp-install: .venv-erp/.installed ## The Tryton server's own environment (.venv-erp)

erp-db: erp-install ## Prepare the reference Tryton database once (cached under .cache/tryton)
	.venv-erp/bin/python erp/setup_db.py

erp: install erp-db ## A real Tryton server on 127.0.0.1:8000 for the demo (Ctrl-C stops it)
	$(BIN)/python erp/server.py run --port 8000

erp-lock: ## Re-resolve erp/requirements.lock
	@test -x .venv-erp/bin/uv || $(MAKE) erp-install
	.venv-erp/bin/uv pip compile -q erp/requirements.in --python-version 3.11 -o erp/requirements.lock \
		--custom-compile-command "make erp-lock"

# sqlfluff lints the dbt SQL as dbt compiles it (the dbt templater, dbt_project/.sqlfluff). dbt
# needs its profile, so RETURNSYNC_DB is an in-memory DuckDB: no warehouse is read or built. The
# templater's parse cache goes to .cache/sqlfluff, away from dbt_project/target (Dagster's manifest).
# `--processes 0`: one process per core (each compiles the project once): ~40 s -> ~25 s on 2 cores.
SQLFLUFF := cd dbt_project && RETURNSYNC_DB=:memory: ../$(BIN)/sqlfluff
SQL_PATHS := models macros tests

# Every check runs even after one fails; the last line names the ones that failed.
lint: install ## ruff check, ruff format check, import contracts, sqlfluff on the dbt SQL (CI runs it before the tests)
	@failed=; \
	echo "== ruff check"; $(BIN)/ruff check . || failed="$$failed ruff-check"; \
	echo "== ruff format --check"; $(BIN)/ruff format --check . || failed="$$failed ruff-format"; \
	echo "== lint-imports (pyproject.toml [tool.importlinter])"; $(BIN)/lint-imports --no-cache --no-logo || failed="$$failed import-contracts"; \
	echo "== sqlfluff lint (dbt templater)"; ($(SQLFLUFF) lint --processes 0 $(SQL_PATHS)) || failed="$$failed sqlfluff"; \
	if [ -n "$$failed" ]; then \
		echo "make lint FAILED:$$failed (make format / make format-sql apply the automatic fixes)"; \
		exit 1; \
	fi; \
	echo "make lint: ruff check, ruff format, import contracts and sqlfluff passed"

lint-sql: install ## sqlfluff alone on the dbt SQL (dbt templater, DuckDB dialect)
	$(SQLFLUFF) lint --processes 0 $(SQL_PATHS)

format: install ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

format-sql: install ## Apply sqlfluff's fixes to the dbt SQL (review the diff; some need a hand)
	$(SQLFLUFF) fix $(SQL_PATHS)

lock: ## Re-resolve requirements.lock from pyproject.toml
	@test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install -q uv==$(UV_VERSION); }
	$(BIN)/uv pip compile -q pyproject.toml --extra dev --python-version 3.11 -o requirements.lock \
		--custom-compile-command "make lock"

bench: install ## Run the benchmarks in bench/ and append to bench/RESULTS.md
	@for b in bench/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

docs: install ## Generate the dbt docs site (dbt_project/target/index.html); DOCS_PORT=8080 also serves it
	$(BIN)/returnsync docs $(if $(DOCS_PORT),--serve $(DOCS_PORT))

clean: ## Remove the environment, caches and local data
	rm -rf $(VENV) .venv-erp .cache .pytest_cache .ruff_cache dbt_project/target dbt_project/logs data .dagster_home

.PHONY: sources-yml
sources-yml: install ## Write the dbt files generated from the source registry (pipelines/lib/contracts.py): _sources.yml, the channel models' contract and list
	$(BIN)/python -m pipelines.lib.contracts

# The live stack of DESIGN §13 (scripts/stack/stack.py): PostgreSQL, Tryton on it, Kafka, Kafka
# Connect with Debezium's PostgreSQL connector, all on 127.0.0.1. The first start fetches the
# Connect jars and the Debezium plugin (Maven Central) and builds the ERP database (~3 min).
stack-up: erp-install ## The live stack (PostgreSQL, Tryton, Kafka, Connect + Debezium) in the background; prints its env (also in .cache/stack/dev/env)
	@bash scripts/system-packages.sh
	@mkdir -p .cache/stack/dev
	$(PYTHON) scripts/stack/stack.py up --env-file .cache/stack/dev/env

stack-down: ## Stop the live stack
	$(PYTHON) scripts/stack/stack.py down

demo: install erp-install $(DAGSTER_HOME)/dagster.yaml ## The closed ERP loop on the live stack: load, run, push, capture, run, push again; exit 0 only if it closed
	@bash scripts/system-packages.sh
	$(BIN)/python scripts/stack/demo.py
