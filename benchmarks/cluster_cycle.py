"""CPU per run of the PostgreSQL multi-process path, its pieces run in turn in one process.

    .venv/bin/python benchmarks/cluster_cycle.py --batches 10,50 --cycles 60

`benchmarks/cluster.py` measures the whole cluster, whose figures move with the
machine's load (a loaded machine makes smaller batches, and smaller batches cost
more per run). This one runs the same store calls with a fixed batch size, one
after the other, in steady state: each cycle queues `batch` events (as a
triggerer stores them), runs one scheduler pass (it applies the previous cycle's
results, makes and starts the runs, queues their tries), then one worker
exchange (`herald worker`'s: it stores the previous results and claims and builds
the new tries). It reports the CPU each run costs in each piece (the thread's
own CPU time, so other processes' load disturbs it little) and in PostgreSQL
(the CPU of the database's backends, from /proc), and the statements per run.
No task runs: the worker's pool and its pipes are not measured here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpu_share import CpuShare, postgres_backends


def psql(sql: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def measure(url: str, name: str, batch: int, cycles: int, warm: int) -> dict[str, Any]:
    from sqlalchemy import event

    from herald import DAG, Asset, task
    from herald.executors.database import DatabaseExecutor
    from herald.executors.records import TaskResult
    from herald.executors.worker_service import exchange
    from herald.loader import DagBag
    from herald.scheduler.requests import build_requests
    from herald.scheduler.scheduler import Scheduler
    from herald.store.db import Database
    from herald.store.events import NewEvent, insert_events
    from herald.store.migrate import upgrade
    from herald.store.states import TryState
    from herald.store.sync import sync_bag
    from herald.store.types import utcnow

    asset = Asset(f"cycle_{batch}")
    with DAG(f"cycle_{batch}", schedule=[asset]) as dag:

        @task
        def work() -> None:
            return None

        work()
    db = Database(url)
    upgrade(db.engine)
    catalog = sync_bag(db.engine, DagBag(Path("."), dags={dag.dag_id: dag}))
    asset_id = catalog.asset_ids[asset.name]
    scheduler = Scheduler(db, DatabaseExecutor(heartbeat_timeout=30, max_waiting_tries=10_000), asyncio.Event())
    scheduler.update({dag.dag_id: dag}, catalog.asset_ids, catalog.consumers)
    statements: Counter[str] = Counter()
    current = ["-"]

    @event.listens_for(db.engine, "before_cursor_execute")
    def _count(*_: Any) -> None:
        statements[current[0]] += 1

    @event.listens_for(db.engine, "commit")
    def _commit(*_: Any) -> None:
        statements[current[0]] += 1

    cpu: Counter[str] = Counter()
    share = CpuShare({"postgres": lambda: postgres_backends(name)})
    results: list[TaskResult] = []
    serial = 0
    made = 0
    for cycle in range(warm + cycles):
        if cycle == warm:
            cpu.clear()
            statements.clear()
            share.start()
            made = 0
        now = utcnow()
        rows = [
            NewEvent(asset_id, "watcher:1", f"{batch}-{serial + i}", {"payload": {"i": serial + i}}, now)
            for i in range(batch)
        ]
        serial += batch
        current[0] = "triggerer"
        t0 = time.thread_time()
        with db.engine.begin() as conn:
            insert_events(conn, rows, catalog.consumers, now)
        cpu["triggerer (events only)"] += time.thread_time() - t0
        current[0] = "scheduler"
        t0 = time.thread_time()
        scheduler._pass([], [])
        cpu["scheduler"] += time.thread_time() - t0
        current[0] = "worker"
        t0 = time.thread_time()
        requests = exchange(db.engine, build_requests, {dag.dag_id: dag}, results, "cycle", batch, None)
        cpu["worker"] += time.thread_time() - t0
        made += len(requests)
        ended = utcnow()
        results = [
            TaskResult(
                r.ti_id, TryState.SUCCESS, started_at=ended, ended_at=ended, hostname="cycle/1", try_number=r.try_number
            )
            for r in requests
        ]
    pg = share.stop()
    db.close()
    runs = max(made, 1)
    return {
        "batch": batch,
        "runs": made,
        "cpu_ms_per_run": {k: round(1000 * v / runs, 3) for k, v in {**cpu, **pg}.items()},
        "statements_per_run": {k: round(v / runs, 3) for k, v in statements.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="10,50")
    parser.add_argument("--cycles", type=int, default=60)
    parser.add_argument("--warm", type=int, default=10)
    args = parser.parse_args()
    for batch in (int(b) for b in args.batches.split(",")):
        name = f"herald_cycle_{os.getpid()}_{batch}"
        psql(f"CREATE DATABASE {name}")
        try:
            row = measure(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", name, batch, args.cycles, args.warm)
        finally:
            psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        total = sum(row["cpu_ms_per_run"].values())
        print(
            f"batch {batch:4d}: CPU ms per run {row['cpu_ms_per_run']} (total {total:.3f})\n"
            f"            statements per run {row['statements_per_run']}"
        )


if __name__ == "__main__":
    main()
