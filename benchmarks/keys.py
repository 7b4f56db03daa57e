"""Flow control at scale: runs/s with and without keys, and admission with 10,000 busy keys.

    .venv/bin/python benchmarks/keys.py --events 20000 --keys 10000
    .venv/bin/python benchmarks/keys.py --events 100000 --keys 10000 --postgres postgresql://postgres@127.0.0.1/postgres

Two measurements:

1. **End to end** (`herald standalone`, SQLite unless `--postgres`, a server on which
   each variant gets a fresh database, dropped after): the same
   one-task DAG twice, once plain and once with `key="k", max_active_runs_per_key=1`;
   `--events` messages over `--keys` keys are published to local:// as fast as the
   publisher goes, and the figure is runs/s from the first publish to the last task
   start, with the latency (publish -> first line of the task) of each run, and the CPU
   seconds Herald's processes used (per run: steadier than runs/s on a shared machine).
2. **Admission** (in this process, on a fresh database): `--keys` keys each with a
   running run and `--queued-per-key` queued behind it, then the time of one admission pass
   (`herald.scheduler.flow.admit`): a sweep (every key read, as each pass did before
   the marked keys), a pass when every key is busy and none is marked (nothing may
   start), one when every key is marked but busy (new runs came for all), and one when
   a tenth of the keys have just finished (a tenth start, in order).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Stamps, herald, summary_ms, task_dag, write_result

CHUNK = 500


@contextmanager
def fresh_database(server: str | None) -> Iterator[str | None]:
    """A new empty PostgreSQL database on `server` (dropped after), or None (SQLite)."""
    if server is None:
        yield None
        return
    import psycopg

    name = f"herald_bench_keys_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def end_to_end(
    events: int, keys: int, keyed: bool, server: str | None, ready: threading.Barrier | None = None
) -> dict[str, Any]:
    """Publish `events` messages over `keys` keys and wait for every task; runs/s and latency.

    With `ready` (`--together`), publishing starts once every variant's Herald is up."""
    from herald.config import Settings
    from herald.publishing import local_publish

    name = "keyed" if keyed else "plain"
    with fresh_database(server) as database_url, herald(f"keys-{name}", database_url) as h:
        source = task_dag(h.stamps_path, ["local://keys"], dag_id=f"keys_{name}")
        if keyed:
            source = source.replace("@dag(schedule=", '@dag(key="k", max_active_runs_per_key=1, schedule=', 1)
        h.write_dag("bench", source)
        h.start_standalone()
        settings = Settings(home=h.home, database_url=database_url)
        h.watchers_running(1)
        if ready is not None:
            ready.wait()
        stamps = Stamps(h.stamps_path)
        published: dict[str, float] = {}
        first = time.time()
        for start in range(0, events, CHUNK):
            ids = [f"e{i}" for i in range(start, min(events, start + CHUNK))]
            t0 = time.time()
            local_publish(
                "keys", [b'{"id": "%s", "k": "k%d"}' % (k.encode(), int(k[1:]) % keys) for k in ids], settings=settings
            )
            for k in ids:
                published[k] = t0
            stamps.poll()
        ok = stamps.wait_count(events, timeout=max(60.0, events / 50))
        done = {k: stamps.seen[k] for k in published if k in stamps.seen}
        last = max(done.values()) if done else first
        return {
            "variant": name,
            "events": events,
            "keys": keys if keyed else None,
            "all_ran": ok,
            "runs_per_s": round(len(done) / max(last - first, 1e-9), 1),
            **summary_ms([done[k] - published[k] for k in done]),
        }


def admission(keys: int, server: str | None, queued: int = 1) -> dict[str, Any]:
    """One admission pass over `keys` busy keys (each with `queued` runs waiting), then with a
    tenth of them free (on a fresh SQLite file, or a fresh database on the PostgreSQL `server`)."""
    with fresh_database(server) as database_url:
        return _admission(keys, database_url, queued)


def _admission(keys: int, database_url: str | None, queued: int) -> dict[str, Any]:
    from herald import DAG, Asset, task
    from herald.scheduler import flow
    from herald.store import flow as store_flow
    from herald.store import runs as store_runs
    from herald.store import tables as t
    from herald.store.db import make_engine
    from herald.store.flow import RunFlow
    from herald.store.migrate import upgrade
    from herald.store.states import RunState, RunType
    from herald.store.types import utcnow

    with DAG("keyed", schedule=[Asset("a")], key="k", max_active_runs_per_key=1) as dag:
        task(lambda: None, task_id="t")()
    home = Path(tempfile.mkdtemp(prefix="herald-bench-admission-"))
    engine = make_engine(database_url or f"sqlite:///{home}/herald.db")
    upgrade(engine)
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(t.dag.insert().values(dag_id="keyed", fileloc="", task_ids=[], tasks=[], updated_at=now))
        names = [f"k{i}" for i in range(keys)]
        running = store_runs.create_runs(
            conn, ["keyed"] * keys, RunType.ASSET_TRIGGERED, now, flow=[RunFlow(k) for k in names]
        )
        store_runs.start(conn, running, now)
        for i in range(queued):
            store_runs.create_runs(
                conn,
                ["keyed"] * keys,
                RunType.ASSET_TRIGGERED,
                now + timedelta(microseconds=i + 1),
                flow=[RunFlow(k, held_by="key") for k in names],
            )
    timings: dict[str, Any] = {"database": engine.dialect.name, "keys": keys, "queued": keys * queued, "running": keys}
    later = now + timedelta(seconds=1)
    flow._swept.pop("keyed", None)
    with engine.begin() as conn:
        # the first pass of a process reads every key (a sweep: what every pass cost before the marks)
        t0 = time.perf_counter()
        flow.admit(conn, dag, later, budget=keys)
        timings["sweep_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    while True:  # the passes taking the marks of the new runs
        with engine.begin() as conn:
            flow.admit(conn, dag, later, budget=keys)
            if store_flow.dirty_count(conn, "keyed") == 0:
                break
    with engine.begin() as conn:
        t0 = time.perf_counter()
        busy = flow.admit(conn, dag, later, budget=keys)
        timings["all_busy_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        timings["all_busy_started"] = len(busy.started)
    with engine.begin() as conn:
        store_flow.mark_dirty(conn, [("keyed", k) for k in names])
    with engine.begin() as conn:
        # every key marked (new runs came for all of them) while each still runs: nothing may start
        t0 = time.perf_counter()
        marked = flow.admit(conn, dag, later, budget=keys)
        timings["all_marked_busy_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        timings["all_marked_busy_started"] = len(marked.started)
        conn.rollback()
    with engine.begin() as conn:
        store_flow.take_dirty(conn, "keyed", keys)  # unmarked again, for the next measure
    with engine.begin() as conn:
        store_runs.finish(conn, RunState.SUCCESS, running[: keys // 10], later)
    with engine.begin() as conn:
        t0 = time.perf_counter()
        freed = flow.admit(conn, dag, later, budget=keys)
        timings["tenth_free_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        timings["tenth_free_started"] = len(freed.started)
    engine.dispose()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--keys", type=int, default=10000)
    parser.add_argument(
        "--postgres", default=None, help="a PostgreSQL server URL (a database to connect to first): fresh databases"
    )
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--queued-per-key", type=int, default=1, help="admission: runs waiting behind each key's")
    parser.add_argument("--skip-admission", action="store_true")
    parser.add_argument(
        "--together", action="store_true", help="run the plain and the keyed variant at once (same load on both)"
    )
    args = parser.parse_args()
    result: dict[str, Any] = {}
    if not args.skip_admission:
        result["admission"] = admission(args.keys, args.postgres, args.queued_per_key)
        print("admission:", result["admission"])
    if args.together:
        # both variants at once, each its own Herald and database: they share whatever load the
        # machine has, so their ratio is steadier than two runs one after the other
        found_by: dict[bool, dict[str, Any]] = {}
        ready = threading.Barrier(2)

        def one(keyed: bool) -> None:
            found_by[keyed] = end_to_end(args.events, args.keys, keyed, args.postgres, ready)

        threads = [threading.Thread(target=one, args=(keyed,)) for keyed in (False, True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for found in found_by.values():
            print(f"{found['variant']} (together):", found)
            result[f"{found['variant']}_together"] = found
        plain_rate, keyed_rate = found_by[False]["runs_per_s"], found_by[True]["runs_per_s"]
        result["keyed_vs_plain_together"] = round(keyed_rate / plain_rate, 3) if plain_rate else None
        print("together: keyed runs/s / plain runs/s:", result["keyed_vs_plain_together"])
    elif not args.skip_e2e:
        for keyed in (False, True):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            found = end_to_end(args.events, args.keys, keyed, args.postgres)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            # Herald's CPU (the standalone process and the workers it waited for, once stopped): the
            # cost of the runs, much less sensitive to a shared machine's load than runs/s
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            found["herald_cpu_s"] = round(cpu, 1)
            found["cpu_ms_per_run"] = round(cpu * 1000 / args.events, 2)
            print(f"{found['variant']}:", found)
            result[found["variant"]] = found
        plain, keyed_rate = result["plain"]["runs_per_s"], result["keyed"]["runs_per_s"]
        result["keyed_vs_plain"] = round(keyed_rate / plain, 3) if plain else None
        print("keyed runs/s / plain runs/s:", result["keyed_vs_plain"])
        cpu_plain, cpu_keyed = result["plain"]["cpu_ms_per_run"], result["keyed"]["cpu_ms_per_run"]
        result["cpu_keyed_vs_plain"] = round(cpu_keyed / cpu_plain, 3) if cpu_plain else None
        print("keyed CPU per run / plain CPU per run:", result["cpu_keyed_vs_plain"])
    write_result("keys", result)


if __name__ == "__main__":
    main()
