"""PostgreSQL with two schedulers and two triggerers: one-task runs per second on local://.

    .venv/bin/python benchmarks/cluster.py --rates 200,500,1000 --seconds 8

Creates its own database (`herald_bench_PID`) on 127.0.0.1:5432 (user postgres),
then runs `herald triggerer` x2, `herald scheduler` x2 and `herald worker` x2
(`--concurrency` processes each) as separate processes. The DAG watches two
local:// queues (two consumer groups, so each triggerer can hold one); the
publisher alternates between them at the offered rate. Latency is publish ->
first line of the task, as everywhere. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Stamps, herald, port_open, task_dag
from cpu_share import CpuShare, postgres_backends, tree
from throughput import offer, report


def psql(sql: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def lease_holders(url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from herald.store import tables as t
    from herald.store.db import make_engine

    engine = make_engine(url, pool_size=0)
    try:
        with engine.connect() as conn:
            w = t.watcher
            return {
                str(r[0]): int(r[1])
                for r in conn.execute(select(w.c.lease_owner, func.count()).group_by(w.c.lease_owner))
            }
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="200,500,1000")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--concurrency", type=int, default=2, help="processes per `herald worker`")
    args = parser.parse_args()
    if not port_open(5432):
        raise SystemExit("PostgreSQL is not listening on 127.0.0.1:5432")
    name = f"herald_bench_{os.getpid()}"
    psql(f"CREATE DATABASE {name}")
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    levels = []
    holders: dict[str, int] = {}
    try:
        with herald("cluster", database_url=url) as h:
            queues = ["bench_c0", "bench_c1"]
            h.write_dag("bench", task_dag(h.stamps_path, [f"local://{q}" for q in queues]))
            h.use_env()
            # One process migrates first, so the others do not race to create the schema.
            first = h.spawn("scheduler")
            time.sleep(3)
            schedulers = [first, h.spawn("scheduler")]
            triggerers = [h.spawn("triggerer"), h.spawn("triggerer")]
            workers = [h.spawn("worker", "--concurrency", str(args.concurrency)) for _ in range(2)]

            def under(procs: list[subprocess.Popen[bytes]]) -> Callable[[], list[int]]:
                return lambda: [pid for p in procs for pid in tree(p.pid)]

            share = CpuShare(
                {
                    "scheduler": under(schedulers),
                    "triggerer": under(triggerers),
                    "worker": under(workers),
                    "postgres": lambda: postgres_backends(name),
                    "publisher": [os.getpid()],
                }
            )
            h.watchers_running(2, timeout=120)
            holders = lease_holders(url)
            if first.poll() is not None:
                raise RuntimeError(h.logs())
            stamps = Stamps(h.stamps_path)
            offer(stamps, queues, 50, 2, -1)  # warm up
            for i, rate in enumerate(float(r) for r in args.rates.split(",")):
                share.start()
                row = offer(stamps, queues, rate, args.seconds, i)
                cpu = share.stop()
                started = int(row["started"])  # type: ignore[call-overload]
                row["cpu_seconds"] = cpu
                row["cpu_ms_per_run"] = {k: round(1000 * v / max(started, 1), 2) for k, v in cpu.items()}
                levels.append(row)
                print(
                    f"cluster offered {rate:6.0f}/s: achieved {row['achieved_runs_per_s']:7.1f} runs/s  "
                    f"p50 {row['p50_ms']:8.1f} ms  p99 {row['p99_ms']:8.1f} ms  missing {row['missing']}\n"
                    f"  CPU ms per run: {row['cpu_ms_per_run']} (total {sum(row['cpu_ms_per_run'].values()):.2f})"  # type: ignore[attr-defined]
                )
                if row["missing"]:
                    break
    finally:
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    print(f"watcher leases: {holders}")
    report(
        "cluster_postgres",
        levels,
        {
            "schedulers": 2,
            "triggerers": 2,
            "workers": f"2 x {args.concurrency} processes",
            "lease_holders": holders,
            "seconds_per_level": args.seconds,
        },
    )


if __name__ == "__main__":
    main()
