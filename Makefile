# ChatLink. `make run` runs the product; `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
AXE    := node_modules/axe-core/axe.min.js

.PHONY: run test lint format migrate bench clean

run: $(VENV)/.runtime
	$(BIN)/python -m app.runner

# Browser tests run apart, inside a loopback-only network namespace (tests/e2e/netns.py).
test: $(VENV)/.dev $(AXE)
	$(BIN)/python -m pytest -m "not browser" $(PYTEST_ARGS)
	$(BIN)/python -m tests.e2e.netns $(BIN)/python -m pytest -m browser $(PYTEST_ARGS)

# alembic check needs a database at head: migrations/check.py builds a scratch one (DATABASE_URL's
# server, or the embedded PostgreSQL) and drops it after.
lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/ci.yml
	$(BIN)/python migrations/check.py

format: $(VENV)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrate: $(VENV)/.runtime
	$(BIN)/alembic upgrade head

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "ChatLink needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(VENV)/bin/python
	$(BIN)/pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@touch $@ $(VENV)/.runtime

# axe-core for the accessibility checks; skipped (the tests then skip) where npm is missing.
$(AXE):
	@if command -v npm >/dev/null 2>&1; then \
	  npm install --no-save --no-package-lock --no-audit --no-fund axe-core@4 >/dev/null; \
	else echo "npm not found: accessibility tests will be skipped"; fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache node_modules artifacts
