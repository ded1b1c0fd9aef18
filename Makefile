# Two commands on a fresh machine: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DATA ?= ../shared/data/demo
# The demo chats as this roster person (a learner in Yên Thành); `make demo PHONE=` chats as
# a visitor. (Not AS: make predefines AS as the assembler.)
PHONE ?= 0912000178
LANG_UI ?= vi

.PHONY: setup demo test run bench clean browser

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "trainingbot needs Python 3.11 or newer: run make with PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/trainingbot demo --data $(DEMO_DATA) --lang $(LANG_UI) $(if $(PHONE),--as $(PHONE))

test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

# The web admin's browser tests drive Debian's Chromium (Playwright's own browser download
# does not work everywhere); installed here when missing, as root (CI runs as root).
CHROMIUM := /usr/bin/chromium
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian's chromium and chromium-driver for the browser tests"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
		else \
			echo "browser tests need Debian's chromium: sudo apt-get install chromium chromium-driver (they fail without it)"; \
		fi; \
	fi

# Benchmarks print their figures; PostgreSQL is included when TRAININGBOT_BENCH_POSTGRES_URL
# (or TRAININGBOT_TEST_POSTGRES_URL) names a server.
bench: $(STAMP)
	$(BIN)/python -m bench.roster
	$(BIN)/python -m bench.catalog
	$(BIN)/python -m bench.registration
	$(BIN)/python -m bench.reminders
	$(BIN)/python -m bench.broadcast
	$(BIN)/python -m bench.delivery

run: $(STAMP)
	$(BIN)/trainingbot run

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache *.egg-info
