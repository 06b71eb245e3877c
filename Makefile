# `make demo` (set up, then backfill + sync the samples into the bundled sandbox), `make test` (the whole suite,
# CI's command) and `make check` (the inner loop: ruff, import contracts, the tests not marked slow).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export DO_NOT_TRACK ?= 1
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: venv demo test check soak ui bench lint clean

MINUTES ?= 30
TEST_WORKERS ?= 2
SEED ?=

venv: $(STAMP)

$(STAMP): pyproject.toml sandbox/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' -e ./sandbox
	# braze-client (a third-party client our sandbox is tested against) pins tenacity<6 and has invalid
	# Requires-Python metadata; it runs fine on our tenacity, so it is installed without its pins.
	$(BIN)/python -m pip install -q --no-deps --ignore-requires-python 'braze-client==2.3.3'
	@touch $(STAMP)

demo: venv
	$(BIN)/python scripts/demo.py

# Two worker processes, a whole module each (its servers and fixtures stay in one process): 10 minutes where
# one process took 15 on two cores, as the suite spends much of its time waiting on servers and subprocesses.
test: venv
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# The inner loop (under 90 s on two cores): lint, the import contracts, and every test not marked `slow`.
# `make test` stays the whole suite and CI's command.
check: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -m "not slow"

# The model of whole nights for MINUTES minutes (SEED=n replays a soak or a failing round): tests/model/soak.py.
soak: venv
	$(BIN)/python -m tests.model.soak --minutes $(MINUTES) $(if $(SEED),--seed $(SEED))

# PREFECT_UI_URL: the address alerts link runs to (without it every alert says "Run: None").
ui: venv
	PREFECT_UI_URL=$${PREFECT_UI_URL:-http://127.0.0.1:4200} $(BIN)/prefect server start --host 127.0.0.1 --port 4200

bench: venv
	$(BIN)/python -m bench --big

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .demo-state
