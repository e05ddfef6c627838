# The two commands of the README: `make up` runs jobkit, `make test` checks it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all up test unit lint typecheck pytest chromium databases wrk bench clean

all: test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# --reload: a valid edit of jobs.yaml, schedules.yaml or a handler restarts the workers (and what else reads it).
up: $(STAMP)
	$(BIN)/jobkit up --reload

# ruff, then import-linter: imports run one way through the layers (pyproject's [tool.importlinter] contracts).
lint: $(STAMP)
	$(BIN)/ruff check jobkit tests bench
	$(BIN)/ruff format --check jobkit tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# The dashboard's browser tests need Debian's Chromium; install it when missing (a CI run without it fails).
CHROMIUM ?= /usr/bin/chromium
chromium:
	test -x $(CHROMIUM) || (apt-get update -qq && apt-get install -y -qq chromium)

# The export tests run on a private PostgreSQL and MariaDB that the fixtures start (Debian's binaries, run from a
# temp dir); install the servers when missing (a run without them fails, it never skips).
databases:
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql)
	test -x /usr/sbin/mariadbd || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server)

# Two pytest workers (pytest-xdist), each taking whole files: the suite takes about half as long on 2 cores, and a
# file's fixtures (its Redis, its servers) stay in one process. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2
pytest: $(STAMP) chromium databases
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

test: lint typecheck pytest

# The tests that need no service (no Redis, no browser, no SMTP): seconds, for the edit-test loop.
unit: $(STAMP)
	$(BIN)/pytest tests/unit

# The API benchmark drives the server with wrk (a C load generator, so the server is what is measured).
wrk:
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)

# The peer line also runs taskiq (the `bench` extra, installed here only).
bench: $(STAMP) wrk databases
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
