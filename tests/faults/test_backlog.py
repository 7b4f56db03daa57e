"""A large backlog on local:// drains with Herald's memory bounded: it must not grow with the backlog.

CI drains 1,000 and 10,000 waiting messages; `make test-faults` 10,000 and
1,000,000 (HERALD_BACKLOG). The peak RSS of the standalone process is the
kernel's own high-water mark (VmHWM), read while it still runs; each run prints
it and writes it to benchmarks/results/backlog-*.json for BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from herald.config import Settings
from herald.publishing import local_publish
from herald.store import tables as t
from tests.e2e.conftest import Herald
from tests.faults.test_kills import Ledger

BIG = int(os.environ.get("HERALD_BACKLOG", "10000"))
SMALL = max(1000, BIG // 100)
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"

DAG = """
from herald import Asset, AssetWatcher, EventBatch, MessageQueueTrigger, dag, task

jobs = Asset("jobs", watchers=[AssetWatcher("w", MessageQueueTrigger("local://jobs"))])

@dag(schedule=[jobs], batch=EventBatch(max_events=1000, max_wait=0.5))
def backlog():
    @task
    def count(triggering_asset_events):
        return len(triggering_asset_events[jobs])
    count()

backlog()
"""


def peak_rss_kib(pid: int) -> int:
    """The peak resident set size a running process has had since it started (VmHWM), in KiB.

    The kernel keeps this high-water mark itself, so a drain that ends before
    anyone looks (1,000 messages take well under a second) is still measured:
    read it while the process runs, before it is stopped.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/status has no VmHWM line")


def drain(herald: Herald, n: int) -> dict[str, Any]:
    """Queue `n` messages with Herald stopped, start it, wait until they are runs, and read its peak memory."""
    herald.write_dag("backlog", DAG)
    settings = Settings(home=herald.home, database_url=herald.env["HERALD_DATABASE_URL"])
    body = json.dumps({"reading": 1.5, "sensor": "s-1"}).encode()
    for start in range(0, n, 5000):
        local_publish("jobs", [body] * min(5000, n - start), settings=settings)
    ledger = Ledger(herald.env["HERALD_DATABASE_URL"])
    try:
        began = time.monotonic()
        herald.start()
        assert herald.proc is not None
        proc = herald.proc
        while not ledger.drained(n):
            if proc.poll() is not None:
                raise AssertionError(f"herald standalone exited with {proc.returncode}:\n{herald.output()}")
            if time.monotonic() - began > 3600:
                raise AssertionError("the backlog did not drain within an hour")
            time.sleep(0.2)  # the interval between two looks at the tables, not a wait for the drain
        elapsed = time.monotonic() - began
        # Still running: the mark read is the standalone process's own, over its whole drain.
        assert proc.poll() is None, herald.output()
        peak = peak_rss_kib(proc.pid)
        with ledger.engine.connect() as conn:
            events = int(conn.execute(select(func.count()).select_from(t.asset_event)).scalar_one())
            counted = sum(conn.execute(select(t.task_instance.c.result)).scalars())
        assert events == n and counted == n
        # A Python process running Herald holds tens of MiB: a reading near zero is a broken measurement.
        assert peak > 20 * 1024, f"implausible peak RSS {peak} KiB for pid {proc.pid}"
        return {
            "messages": n,
            "peak_rss_mib": round(peak / 1024, 1),
            "seconds": round(elapsed, 1),
            "messages_per_second": round(n / elapsed),
        }
    finally:
        ledger.close()


@pytest.mark.timeout(4000)
def test_memory_does_not_grow_with_the_backlog(tmp_path: Path) -> None:
    results = []
    for size in (SMALL, BIG):
        herald = Herald(tmp_path / f"home-{size}", f"sqlite:///{tmp_path}/herald-{size}.db")
        try:
            results.append(drain(herald, size))
        finally:
            if herald.proc is not None:
                herald.stop()
    small, big = results
    print(f"backlog drain: {small} then {big}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"backlog-{BIG}.json").write_text(json.dumps(results, indent=2))
    # Bounded: a backlog many times larger costs at most a little more memory.
    assert big["peak_rss_mib"] <= small["peak_rss_mib"] * 1.25 + 20, results
