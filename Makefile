# The two commands a newcomer needs: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
FLASK = $(VENV)/bin/flask --app wsgi
PORT ?= 5000

.PHONY: run test test-fast lint install clean promises screenshots bench corpus

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

## Run the dashboard locally: SQLite, the built-in Meta sandbox, demo data, on http://127.0.0.1:5000
run: install
	$(FLASK) db upgrade
	$(FLASK) demo seed
	@echo "Starting on http://127.0.0.1:$(PORT)  (Ctrl-C stops it)"
	@# Ctrl-C is how a local run ends: honcho's exit status 130 for it is not an error.
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" PORT=$(PORT) LOCAL_BASE_URL=http://127.0.0.1:$(PORT) \
	  $(VENV)/bin/honcho -f Procfile.dev start; status=$$?; \
	  if [ $$status -eq 130 ] || [ $$status -eq 0 ]; then echo "Stopped."; else exit $$status; fi

## Run the whole test suite (SQLite; set TEST_DATABASE_URL for PostgreSQL)
## Four processes (pytest-xdist), each with its own database: most tests wait on I/O, not the CPU
test: install
	$(VENV)/bin/pytest -n 4

## The suite without browser tests and multi-process tests (markers `browser` and `slow`): the quick loop
test-fast: install
	$(VENV)/bin/pytest -n 4 -m "not browser and not slow"

## How the classifier names the real-world Meta errors in tests/corpus/, per cause
corpus: install
	$(VENV)/bin/python tools/corpus_report.py

## Every promise in docs/promises.md with the tests that name it (exit 1 on a gap)
promises: install
	$(VENV)/bin/python tools/promise_coverage.py

## Regenerate the README's screenshots from a real browser run (Debian Chromium)
screenshots: install
	SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(VENV)/bin/pytest -q -p no:randomly tests/browser/test_screenshots.py

## Benchmarks (need PostgreSQL on 127.0.0.1); see docs/benchmarks.md
bench: install
	$(VENV)/bin/python -m bench.sweep
	$(VENV)/bin/python -m bench.fleet
	$(VENV)/bin/python -m bench.load

## ruff (lint + format) over everything, mypy over webapp/ (settings in pyproject.toml)
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache instance/dashboard.sqlite3
