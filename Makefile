# Two entry points for a fresh machine with Python 3.11+: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# Azurite, the Azure Storage emulator the tests start (3.35.0: 3.36+ needs Node 22).
	npm install --prefix $(VENV)/node --no-audit --no-fund --loglevel=error azurite@3.35.0
	touch $(STAMP)

# Dagster's instance lives in .mixsync/dagster_home (DAGSTER_HOME), configured by ./dagster.yaml.
# dagster dev starts from inside DAGSTER_HOME so it reads that copy without a warning.
DAGSTER_HOME_DIR := $(CURDIR)/.mixsync/dagster_home
HOST ?= 127.0.0.1
PORT ?= 3000

run: $(STAMP)
	mkdir -p $(DAGSTER_HOME_DIR)
	cp dagster.yaml $(DAGSTER_HOME_DIR)/dagster.yaml
	$(BIN)/mixsync -c syncs.yaml validate
	# One process initialises the SQLite instance before dagster dev opens it from several.
	DAGSTER_HOME=$(DAGSTER_HOME_DIR) $(BIN)/dagster instance migrate >/dev/null
	cd $(DAGSTER_HOME_DIR) && DAGSTER_HOME=$(DAGSTER_HOME_DIR) MIXSYNC_CONFIG=$(CURDIR)/syncs.yaml \
		$(CURDIR)/$(BIN)/dagster dev -w $(CURDIR)/workspace.yaml -h $(HOST) -p $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python bench/bench_local.py

clean:
	rm -rf $(VENV) .mixsync
