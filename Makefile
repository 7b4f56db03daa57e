# Herald: two commands matter. `make demo` runs Herald with example DAGs and sample
# messages; `make test` installs what the tests need, starts the services and runs them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast test-faults services chromium lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' -c constraints.txt
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
	HERALD_FAULT_MESSAGES=100000 HERALD_FAULT_KILLS=10 HERALD_BACKLOG=1000000 $(BIN)/python -m pytest -p no:cacheprovider tests/faults

test-fast: install
	$(BIN)/python -m pytest -p no:cacheprovider tests/unit

lint: install
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .herald .pytest_cache .mypy_cache .ruff_cache

# Every figure of BENCHMARKS.md at a size that takes under 10 minutes (results in
# benchmarks/results/, git-ignored; the chart in benchmarks/latency_vs_load.png).
.PHONY: bench
bench: install services
	$(BIN)/python -m pip install --quiet -e '.[bench]' -c constraints.txt
	$(BIN)/python benchmarks/latency.py --broker all --messages 100 && \
	$(BIN)/python benchmarks/throughput.py --rates 100,250,500,1000,1250,1500 --seconds 8 && \
	$(BIN)/python benchmarks/ingest.py --broker local,redis,kafka --messages 50000 && \
	$(BIN)/python benchmarks/cluster.py --rates 200,500,1000 --seconds 6 && \
	$(BIN)/python benchmarks/idle.py cpu --watchers 100 --seconds 30 && \
	$(BIN)/python benchmarks/idle.py memory --watchers 1000 --queues 100 && \
	$(BIN)/python benchmarks/airflow_compare.py --latency 10 --latency-defaults 2 --drain 1000 --drain-timeout 120 && \
	$(BIN)/python benchmarks/chart.py
