# luminar_store: every-day commands. `make help` lists them.
#
# Each target says what it does in a `## ` comment on its line (that is what `make help` prints); `##@ ` lines
# open a section. Targets only call the project's command line (luminar-db, migrations/manager.py,
# scripts/setup_database.py) or scripts/; the logic lives there.
# Nothing here waits for keyboard input when stdin is not a terminal (db-reset needs FORCE=1 then).

SHELL := /bin/bash
.DEFAULT_GOAL := help
.SUFFIXES:

VENV    := .venv
PY      := $(VENV)/bin/python
LUMINAR := $(VENV)/bin/luminar-db
PYTEST_ARGS ?=
# Test processes, each with its own PostgreSQL; a test file stays in one process (its module fixtures run once).
TEST_WORKERS ?= 2

.PHONY: help setup dev-setup \
        db-start db-stop db-status db-reset db-test-setup db-setup quick-start logs \
        db-migrate migrate-create migrate-status \
        test lint demo bench bench-audit bench-analysis bench-sync bench-replica gistar-fixture dbscan-fixture faults sample-data db-backup db-restore db-stats \
        db-sync clean release-claims monitoring-start monitoring-stop bench-metrics bench-synthetic

##@ Getting started

help: ## List every target with a one-line description
	@awk 'BEGIN { FS = ":.*## " } \
	     /^##@ / { printf "\n%s\n", substr($$0, 5) } \
	     /^[a-zA-Z0-9_-]+:.*## / { printf "  %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
	@echo
	@echo "Settings come from the environment and .env (see .env.example); e.g. make db-start LUMINAR_DB_PORT=5440"

dev-setup: ## Install what this machine lacks: PostgreSQL + PostGIS, PgBouncer (apt), .venv, the package with dev tools
	@scripts/dev_setup.sh

# The quiet, fast form of dev-setup that every target using .venv runs first (a no-op when all is present).
setup:
	@scripts/dev_setup.sh --quiet

##@ Local database (Docker Compose when an engine answers, else an embedded cluster under .luminar/)

db-start: setup ## Start the local database (role, database luminar_local, PostGIS); idempotent
	@$(LUMINAR) db start

db-stop: setup ## Stop the local database (its data stays)
	@$(LUMINAR) db stop

db-status: setup ## Is the server up and reachable? PostgreSQL + PostGIS versions, migrations current?
	@$(LUMINAR) db status

db-reset: setup ## Drop and recreate the database, then migrate (asks first; FORCE=1 to skip the question)
	@$(LUMINAR) db reset $(if $(filter 1,$(FORCE)),--yes)

db-setup: setup ## Create the database of LUMINAR_ENV if missing (role, PostGIS) and migrate it; idempotent
	@$(PY) scripts/setup_database.py setup

quick-start: setup ## Start the local database and set it up in one step, then show how to connect (password hidden)
	@$(MAKE) --no-print-directory db-start
	@$(MAKE) --no-print-directory db-setup
	@$(LUMINAR) db status
	@echo "Connect: psql with the 'database' URL above; the password is LUMINAR_DB_PASSWORD (or LUMINAR_LOCAL_DB_PASSWORD) of .env, not printed"
	@echo "Python:  from luminar_store import db   (node code: luminar-db node-shim DIR, then from database.access import db)"

logs: setup ## Show the local database server's log, following it (FOLLOW=0: the last lines only; LINES=N)
	@$(LUMINAR) db logs $(if $(filter 0,$(FOLLOW)),,--follow) $(if $(LINES),--lines $(LINES))

db-test-setup: setup ## Start and migrate the testing database (LUMINAR_ENV=testing, port 5433); make test needs none
	@LUMINAR_ENV=testing $(LUMINAR) db start
	@LUMINAR_ENV=testing $(PY) migrations/manager.py migrate

##@ Migrations

db-migrate: setup ## Apply the pending migrations to the database of LUMINAR_ENV
	@$(PY) migrations/manager.py migrate

migrate-create: setup ## Create a new migration file: make migrate-create NAME=add_new_feature
	@if [ -z "$(NAME)" ]; then echo "Error: NAME is missing; e.g. make migrate-create NAME=add_new_feature" >&2; exit 1; fi
	@$(PY) migrations/manager.py create "$(NAME)"

migrate-status: setup ## List applied and pending migrations
	@$(PY) migrations/manager.py status

##@ Quality

test: setup ## Run the test suite (starts its own PostgreSQL; works as root)
	@rc=0; $(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "Error: pytest collected no tests" >&2; fi; \
	exit $$rc

lint: setup ## Check the code with ruff
	@$(VENV)/bin/ruff check .

demo: setup ## On a fresh machine: start and migrate the local database, load sample data, analyse it, show stats and hotspots
	@$(MAKE) --no-print-directory db-start
	@$(MAKE) --no-print-directory db-migrate
	@$(LUMINAR) db status --verbose
	@$(PY) scripts/setup_database.py sample-data --if-empty
	@$(LUMINAR) analyze
	@$(PY) scripts/setup_database.py stats --recent 5 --hotspots 5

bench: setup ## Run the benchmarks (results in benchmarks/results/)
	@$(PY) benchmarks/run.py

bench-audit: setup ## Measure the audit trail's cost: bulk and single stores, audit on vs off (~2 min)
	@$(PY) benchmarks/audit.py

bench-analysis: setup ## Time luminar-db analyze and the intelligence reads at 1M events (EVENTS=N; ~10 min)
	@$(PY) benchmarks/analysis.py --events $(or $(EVENTS),1000000)

bench-sync: setup ## Measure sync's throughput between two scratch databases (REPORTS=N, default 20000; ~1 min)
	@$(PY) benchmarks/sync.py --reports $(or $(REPORTS),20000)

bench-replica: setup ## Measure how fast a streaming read replica applies the primary's WAL (EVENTS=N a load, default 200000; ~2 min)
	@$(PY) benchmarks/replica_apply.py --events $(or $(EVENTS),200000)

bench-synthetic: setup ## Time the synthetic load beside a plain COPY of the same rows (REPORTS=N, default 1000000; ~15 min)
	@$(PY) benchmarks/synthetic_load.py --reports $(or $(REPORTS),1000000)

gistar-fixture: setup ## Recompute tests/fixtures/gistar_esda.json with PySAL esda (installs esda, libpysal into .venv)
	@$(PY) -m pip install --quiet esda libpysal
	@$(PY) tests/fixtures/make_gistar_fixture.py

.PHONY: mann-kendall-fixture
mann-kendall-fixture: setup ## Recompute tests/fixtures/mann_kendall.json with pymannkendall (installs it into .venv)
	@$(PY) -m pip install --quiet pymannkendall
	@$(PY) tests/fixtures/make_mann_kendall_fixture.py

dbscan-fixture: setup ## Recompute tests/fixtures/dbscan_sklearn.json with scikit-learn's DBSCAN (installs scikit-learn into .venv)
	@$(PY) -m pip install --quiet scikit-learn
	@$(PY) tests/fixtures/make_dbscan_fixture.py

faults: setup ## Run the fault scenarios (long; figures in benchmarks/results/faults-*.json)
	@$(PY) benchmarks/faults/run.py

##@ Data and operations

sample-data: setup ## Load realistic synthetic data (LUMINAR_ENV local/testing): make sample-data REPORTS=100000 SEED=7
	@$(PY) scripts/setup_database.py sample-data $(if $(REPORTS),--reports $(REPORTS)) $(if $(DAYS),--days $(DAYS)) $(if $(SEED),--seed $(SEED))

db-backup: setup ## Back the database up (pg_dump custom format) into backups/luminar_<env>_<UTC stamp>.dump
	@$(PY) scripts/setup_database.py backup

db-restore: setup ## Replace the database's contents with a backup: make db-restore FILE=backups/<file> (FORCE=1: no question)
	@if [ -z "$(FILE)" ]; then echo "Error: FILE is missing; e.g. make db-restore FILE=backups/luminar_local_20250817T120000Z.dump" >&2; exit 1; fi
	@$(PY) scripts/setup_database.py restore "$(FILE)" --clean $(if $(filter 1,$(FORCE)),--yes)

db-stats: setup ## Key metrics: reports, events, throughput, consensus accuracy, coverage by region, miners, nodes
	@$(PY) scripts/setup_database.py stats

db-sync: setup ## Copy from the central database (LUMINAR_SYNC_SOURCE_URL) what changed in the last HOURS (24); FULL=1: everything
	@$(PY) scripts/setup_database.py sync $(if $(filter 1,$(FULL)),--full,--hours=$(or $(HOURS),24))

clean: setup ## Delete data older than LUMINAR_RETENTION_DAYS (default 365; DAYS=N) in batches, asks first (FORCE=1: no question)
	@$(PY) scripts/setup_database.py clean $(if $(DAYS),--days $(DAYS)) $(if $(filter 1,$(FORCE)),--yes)

release-claims: setup ## Return raw reports whose claim outlived the lease to the queue now (MINUTES=N: claims older than N minutes)
	@$(LUMINAR) reports release-claims $(if $(MINUTES),--older-than $(MINUTES))

##@ Monitoring

monitoring-start: setup ## Prometheus, postgres_exporter and Grafana (Docker, http://localhost:3000) and `luminar-db metrics`
	@scripts/monitoring.sh start

monitoring-stop: setup ## Stop what monitoring-start started (the database keeps running)
	@scripts/monitoring.sh stop

bench-metrics: setup ## Measure one read of `luminar-db metrics` at 1M events on a scratch server (~5 min; benchmarks/metrics.py)
	@$(PY) benchmarks/metrics.py
