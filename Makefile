# Herald: two commands matter. `make demo` runs Herald with example DAGs and sample
# messages; `make test` installs what the tests need, starts the services and runs them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: install install-demo demo dist test test-fast test-faults services chromium lint clean

# What the tests, the linters and the benchmarks need (every extra and the toolchain).
install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' -c constraints.txt
	touch $(STAMP) $(DEMO_STAMP)

# The demo runs standalone on SQLite and local://: Herald's own dependencies only.
install-demo: $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e . -c constraints.txt
	touch $(DEMO_STAMP)

demo: install-demo
	$(BIN)/python examples/demo.py

# The sdist and the wheel (built from the sdist) in dist/.
dist: install-demo
	$(BIN)/python -m pip install --quiet 'build>=1.2' -c constraints.txt
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

services:
	bash scripts/services.sh

# The browser tests drive Debian's Chromium (never a downloaded browser).
chromium:
	test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# The suite runs in TEST_JOBS processes: most tests wait on brokers, databases and
# Herald processes rather than compute, so three share two cores well. The longest
# tests go first (tests/conftest.py) and an idle process takes tests queued for a
# busy one (worksteal): the suite does not end on one process's queue.
TEST_JOBS ?= 3

test: install services chromium
	$(BIN)/python -m pytest -p no:cacheprovider -n $(TEST_JOBS) --dist worksteal --durations=25

# The fault-injection harness at full size (CI runs it at 2,000 messages).
test-faults: install services
	HERALD_FAULT_MESSAGES=100000 HERALD_FAULT_KILLS=10 HERALD_BACKLOG=1000000 $(BIN)/python -m pytest -p no:cacheprovider tests/faults

test-fast: install
	$(BIN)/python -m pytest -p no:cacheprovider tests/unit

lint: install
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) .herald .pytest_cache .mypy_cache .ruff_cache dist build

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
	$(BIN)/python benchmarks/keys.py --events 10000 --keys 10000 && \
	$(BIN)/python benchmarks/waits.py --waits 10000 && \
	$(BIN)/python benchmarks/sharing.py --messages 10000 && \
	$(BIN)/python benchmarks/chart.py
