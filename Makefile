# Herald: two commands matter. `make demo` runs Herald with example DAGs and sample
# messages; `make test` installs what the tests need, starts the services and runs them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast test-faults services chromium lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: install
	$(BIN)/python examples/demo.py

services:
	bash scripts/services.sh

# The browser tests drive Debian's Chromium (never a downloaded browser).
chromium:
	test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

test: install services chromium
	$(BIN)/python -m pytest -p no:cacheprovider

# The fault-injection harness at full size (CI runs it at 2,000 messages).
test-faults: install services
	HERALD_FAULT_MESSAGES=100000 HERALD_FAULT_KILLS=10 $(BIN)/python -m pytest -p no:cacheprovider tests/faults

test-fast: install
	$(BIN)/python -m pytest -p no:cacheprovider tests/unit

lint: install
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .herald .pytest_cache .mypy_cache .ruff_cache
