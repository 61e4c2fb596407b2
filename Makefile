# Civic Vault. `make run` serves the demo city; `make test` runs the whole suite.
# CIVIC_* variables (docs/configuration.md) pass through from the environment or the command line:
#   CIVIC_PORT=9000 make run        make run CIVIC_PORT=9000
# Set CIVIC_TEST_POSTGRES_URL to run the PostgreSQL suite too (CI always does).

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
BROWSER_DIR := tests/browser
BROWSER_STAMP := $(BROWSER_DIR)/node_modules/.installed

.PHONY: help install install-browser browser-tools run test test-browser lint bench bench-quick bench-tools clean

help:
	@echo "make run          install if needed, migrate, seed the demo city, serve (CIVIC_HOST/CIVIC_PORT)"
	@echo "make test         the test suite"
	@echo "make lint         ruff check, ruff format --check, mypy"
	@echo "make bench        benchmarks; make bench-quick for a short run"
	@echo "make install      the virtual environment in $(VENV) (redone when pyproject.toml changes)"
	@echo "make test-browser only the browser tests (Debian's chromium, axe-core from npm)"
	@echo "make clean        caches and build output (keeps $(VENV) and var/, which holds the data)"

install: $(STAMP)

$(BIN)/python:
	python3 -m venv $(VENV)

# Reinstalled only when pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

# The browser tests (tests/browser): axe-core from the npm registry (npm ci, pinned by the lockfile;
# redone when the lockfile changes) and Debian's chromium (installed when missing and we may).
# Playwright never downloads a browser here.
install-browser: browser-tools $(BROWSER_STAMP)

$(BROWSER_STAMP): $(BROWSER_DIR)/package.json $(BROWSER_DIR)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix $(BROWSER_DIR) --no-audit --no-fund --loglevel=error && touch $(BROWSER_STAMP); \
	else echo "npm is missing: the accessibility checks of tests/browser need it (axe-core)"; fi

browser-tools:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || echo "install Debian's chromium (apt-get install -y chromium) for the browser tests"

run: install
	$(BIN)/civic-vault-server serve

test: install install-browser
	$(BIN)/pytest -q -p no:cacheprovider

test-browser: install install-browser
	$(BIN)/pytest -q -p no:cacheprovider tests/browser

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# wrk (Debian's) drives the HTTP benchmarks; installed here when missing and we may.
bench-tools:
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq wrk; } || echo "install wrk (apt-get install -y wrk) for the HTTP benchmarks"

# The full run also writes docs/bench-latest.md (the table the README links), errors included.
bench: install bench-tools
	$(BIN)/python -m bench; status=$$?; \
	$(BIN)/python -m bench.report bench/results.json -o docs/bench-latest.md; exit $$status

bench-quick: install bench-tools
	$(BIN)/python -m bench --quick

# Never removes var/: it holds the database and the keys.
clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist test-artifacts *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
