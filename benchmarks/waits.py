"""Waiting inside a run: how fast a deferred try resumes on its event, and what many waiting tries cost.

    .venv/bin/python benchmarks/waits.py --waits 10000 --samples 50
    .venv/bin/python benchmarks/waits.py --database-url postgresql://postgres@127.0.0.1/bench

N runs of an approval DAG (`WaitForAssetEvent` matching the run's `order_id`,
then a `ship` task) are started and run until every approval try is deferred.
Then, one at a time, the matching event of a random waiting run is committed
and the scheduler is woken (as NOTIFY wakes it); the latency is from the
event's commit to the moment the resumed try's downstream task is handed to
the executor (the pass that matched the event committed). The scheduler loop is
Herald's own (`Scheduler.run`), in this process; the executor runs each try
inline (`run_task`), so no worker process exists at all while the tries wait.
Memory: this process's RSS before and after the N tries deferred (the scheduler
keeps no state per wait: the waits are rows of `task_wait`), and the table's size.

What it leaves out: the OS wake-up (a NOTIFY or datagram, see latency.py) and a
worker's start of the next task.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from common import summary_ms, write_result

from herald.executors.records import TaskRequest, TaskResult, TaskStarted
from herald.executors.worker import run_task
from herald.loader import load_folder
from herald.scheduler.scheduler import Scheduler
from herald.store import runs as store_runs
from herald.store import waits as store_waits
from herald.store.db import Database
from herald.store.events import NewEvent, insert_events
from herald.store.migrate import upgrade
from herald.store.sync import sync_bag
from herald.store.types import utcnow

DAG = """
from herald import Asset, WaitForAssetEvent, dag, task

approvals = Asset("approvals")

@dag(schedule=None)
def order_flow():
    wait = WaitForAssetEvent(
        task_id="approval", asset=approvals, match="order_id == '{{ dag_run.conf.order_id }}'", timeout=None
    )

    @task
    def ship(approval):
        return approval["payload"]["order_id"]

    ship(wait.output)

order_flow()
"""


def rss_mb() -> float:
    """This process's resident memory, in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class InlineExecutor:
    """Runs each try at once in this thread (no worker process); notes when each `ship` try is handed over."""

    workers_in_process = False
    wake_channel: str | None = None
    needs_requests = True

    def __init__(self, dags: dict[str, Any]) -> None:
        self.dags = dags
        self.shipped: dict[str, float] = {}  # order id -> perf_counter when its ship try was handed over
        self.deferred = 0
        self._on_result: Callable[[TaskResult], None] | None = None
        self.lock = threading.Lock()

    def start(self, on_started: Callable[[TaskStarted], None], on_result: Callable[[TaskResult], None]) -> None:
        self._on_result = on_result

    def collect(self, conn: Any, now: datetime) -> tuple[list[TaskResult], bool]:
        return [], False

    def queued(self, conn: Any) -> int:
        return 0

    def submit(self, requests: list[TaskRequest]) -> None:
        handed = time.perf_counter()
        assert self._on_result is not None
        for request in requests:
            if request.task_id == "ship":
                with self.lock:
                    self.shipped[request.run["conf"]["order_id"]] = handed
            result = TaskResult.from_wire(run_task(self.dags, request.to_wire()))
            if request.task_id == "approval":
                self.deferred += 1
            self._on_result(result)

    def cancel(self, ti_ids: list[int]) -> None:
        pass

    def reload(self, files: Mapping[str, Any] | None = None) -> None:
        pass

    async def stop(self, grace: float) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--waits", type=int, default=10000, help="runs waiting at once")
    parser.add_argument("--samples", type=int, default=50, help="events resumed one at a time")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary folder")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="herald-waits-"))
    (home / "dags").mkdir()
    (home / "dags" / "order_flow.py").write_text(textwrap.dedent(DAG))
    db = Database(args.database_url or f"sqlite:///{home}/herald.db")
    upgrade(db.engine)
    bag = load_folder(home / "dags")
    assert not bag.errors, bag.errors
    catalog = sync_bag(db.engine, bag)
    executor = InlineExecutor(bag.dags)
    wake = asyncio.Event()
    scheduler = Scheduler(db, executor, wake, max_waiting_tries=args.waits + 100)
    scheduler.update(bag.dags, catalog.asset_ids, catalog.consumers)
    executor.start(scheduler.on_started, scheduler.on_result)

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(scheduler.run(),), daemon=True)
    rss_before = rss_mb()
    started = time.perf_counter()
    with db.engine.begin() as conn:
        for i in range(args.waits):
            store_runs.trigger_run(conn, "order_flow", {"order_id": f"o{i}"})
    thread.start()
    while executor.deferred < args.waits:
        if time.perf_counter() - started > 600:
            raise SystemExit(f"only {executor.deferred} of {args.waits} tries deferred in 600 s")
        time.sleep(0.05)
    with db.engine.connect() as conn:
        while store_waits.count(conn) < args.waits:
            time.sleep(0.05)
        waiting = store_waits.count(conn)
    deferred_in = time.perf_counter() - started
    rss_after = rss_mb()
    table_bytes = _table_bytes(db)
    print(f"{waiting} tries waiting after {deferred_in:.1f}s; RSS {rss_before:.0f} -> {rss_after:.0f} MB")

    asset_id = catalog.asset_ids["approvals"]
    orders = random.sample(range(args.waits), min(args.samples, args.waits))
    latencies: list[float] = []
    for n, i in enumerate(orders):
        order = f"o{i}"
        now = utcnow()
        with db.engine.begin() as conn:
            insert_events(conn, [NewEvent(asset_id, "bench", f"a{n}", {"payload": {"order_id": order}}, now)], {}, now)
        committed = time.perf_counter()
        loop.call_soon_threadsafe(scheduler.wake)
        deadline = committed + 30
        while order not in executor.shipped and time.perf_counter() < deadline:
            time.sleep(0.0002)
        if order in executor.shipped:
            latencies.append(executor.shipped[order] - committed)
        time.sleep(random.uniform(0.01, 0.03))  # the next event comes to an idle scheduler
    loop.call_soon_threadsafe(scheduler.stop)
    thread.join(10)
    summary = summary_ms(latencies)
    print(f"resume latency (event commit -> downstream task handed over): {summary}")
    write_result(
        "waits",
        {
            "database": db.engine.dialect.name,
            "waiting_tries": waiting,
            "deferred_in_s": round(deferred_in, 2),
            "worker_processes_while_waiting": 0,
            "rss_mb_before": round(rss_before, 1),
            "rss_mb_with_waits": round(rss_after, 1),
            "task_wait_table_bytes": table_bytes,
            "resume_latency": summary,
        },
    )
    db.close()


def _table_bytes(db: Database) -> int | None:
    """The size of `task_wait` with its indexes (PostgreSQL), or None."""
    if db.engine.dialect.name != "postgresql":
        return None
    from sqlalchemy import text

    with db.engine.connect() as conn:
        found: int = conn.execute(text("SELECT pg_total_relation_size('task_wait')")).scalar_one()
    return found


if __name__ == "__main__":
    main()
