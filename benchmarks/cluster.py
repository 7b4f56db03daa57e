"""PostgreSQL with two schedulers and two triggerers: one-task runs per second on local://.

    .venv/bin/python benchmarks/cluster.py --rates 200,500,1000 --seconds 8
    .venv/bin/python benchmarks/cluster.py --executor celery --rates 200,500,1000 --seconds 8

Creates its own database (`herald_bench_PID`) on 127.0.0.1:5432 (user postgres),
then runs `herald triggerer` x2, `herald scheduler` x2 and `herald worker` x2
(`--concurrency` processes each) as separate processes. The DAG watches two
local:// queues (two consumer groups, so each triggerer can hold one); the
publisher alternates between them at the offered rate. Latency is publish ->
first line of the task, as everywhere. The database is dropped at the end.

With `--executor celery` every process runs with `HERALD_EXECUTOR=celery`: the
schedulers send tries to Celery on Redis (`--broker-url`, a queue prefix of this
run's own), and the two `herald worker` are Celery workers (`--concurrency` pool
processes each), as in tests/e2e/test_celery.py. Other `HERALD_*` variables in
the environment reach every process (for example `HERALD_CELERY_BATCH_SIZE`).

Each level prints the CPU each run cost per kind of process (`cpu_share`).
`--profile` records the schedulers and the workers (main and pool processes) with
py-spy during the last level, into benchmarks/results/profile_cluster_*.txt
(summarise them with benchmarks/profile_summary.py).
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

from common import BIN, RESULTS, Stamps, herald, port_open, task_dag
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


def redis_server() -> list[int]:
    """The Redis server's pid (shared with other work on this machine: its CPU is not only ours)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if fh.read().startswith(b"redis-server"):
                        found.append(int(entry))
            except OSError:
                continue
    return found


def drop_celery_queues(broker_url: str, prefix: str) -> None:
    """Delete this run's Celery queues (and kombu's bindings of them) from Redis."""
    import redis

    client = redis.Redis.from_url(broker_url)
    keys = list(client.scan_iter(f"{prefix}*")) + list(client.scan_iter(f"_kombu.binding.{prefix}*"))
    if keys:
        client.delete(*keys)


def profile(procs: dict[str, list[int]], seconds: float, tag: str) -> list[subprocess.Popen[bytes]]:
    """py-spy each process (raw output, 100 Hz) for `seconds`."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    spies = []
    for kind, pids in procs.items():
        for n, pid in enumerate(pids):
            out = RESULTS / f"profile_cluster_{tag}_{kind}{n}.txt"
            command = [str(BIN / "py-spy"), "record", "-d", str(int(seconds)), "-r", "100", "-p", str(pid)]
            spies.append(
                subprocess.Popen(
                    [*command, "-f", "raw", "-o", str(out)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
    return spies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="200,500,1000")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--concurrency", type=int, default=2, help="processes per `herald worker`")
    parser.add_argument("--executor", choices=["database", "celery"], default="database")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/7", help="Celery's broker (--executor celery)")
    parser.add_argument("--profile", action="store_true", help="py-spy schedulers and workers during the last level")
    parser.add_argument("--name", default="", help="result file name (default cluster_postgres / cluster_celery)")
    args = parser.parse_args()
    if not port_open(5432):
        raise SystemExit("PostgreSQL is not listening on 127.0.0.1:5432")
    celery = args.executor == "celery"
    # What the caller set (before this script adds its own HERALD_* to its environment).
    settings = {k: v for k, v in os.environ.items() if k.startswith("HERALD_") and "URL" not in k}
    if celery and not port_open(6379):
        raise SystemExit("Redis is not listening on 127.0.0.1:6379")
    name = f"herald_bench_{os.getpid()}"
    prefix = f"herald-bench-{os.getpid()}."
    psql(f"CREATE DATABASE {name}")
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    levels = []
    holders: dict[str, int] = {}
    rates = [float(r) for r in args.rates.split(",")]
    try:
        with herald("cluster", database_url=url) as h:
            queues = ["bench_c0", "bench_c1"]
            h.write_dag("bench", task_dag(h.stamps_path, [f"local://{q}" for q in queues]))
            if celery:
                h.env.update(
                    {
                        "HERALD_EXECUTOR": "celery",
                        "HERALD_CELERY_BROKER_URL": args.broker_url,
                        # Queues of this run's own on a broker others may share.
                        "HERALD_CELERY_QUEUE_PREFIX": prefix,
                    }
                )
            h.use_env()
            # One process migrates first, so the others do not race to create the schema.
            first = h.spawn("scheduler")
            time.sleep(3)
            schedulers = [first, h.spawn("scheduler")]
            triggerers = [h.spawn("triggerer"), h.spawn("triggerer")]
            # A Celery worker in a process group of its own: its pool processes end with it.
            workers = [h.spawn("worker", "--concurrency", str(args.concurrency), new_session=celery) for _ in range(2)]

            def under(procs: list[subprocess.Popen[bytes]]) -> Callable[[], list[int]]:
                return lambda: [pid for p in procs for pid in tree(p.pid)]

            kinds: dict[str, object] = {
                "scheduler": under(schedulers),
                "triggerer": under(triggerers),
            }
            if celery:
                # The Celery worker's main process (broker, acks) apart from its pool (Herald's code).
                kinds["celery main"] = [p.pid for p in workers]
                kinds["celery pool"] = lambda: [pid for p in workers for pid in tree(p.pid) if pid != p.pid]
            else:
                # a `herald worker` process (claims, results, heartbeats) apart from its pool (the tasks)
                kinds["worker"] = [p.pid for p in workers]
                kinds["worker pool"] = lambda: [pid for p in workers for pid in tree(p.pid) if pid != p.pid]
            kinds |= {
                "postgres": lambda: postgres_backends(name),
                "publisher": [os.getpid()],
            }
            if celery:
                kinds["redis (shared)"] = redis_server
            share = CpuShare(kinds)
            h.watchers_running(2, timeout=120)
            holders = lease_holders(url)
            if first.poll() is not None:
                raise RuntimeError(h.logs())
            stamps = Stamps(h.stamps_path)
            offer(stamps, queues, 50, 2, -1)  # warm up
            for i, rate in enumerate(rates):
                spies = []
                if args.profile and i == len(rates) - 1:
                    spies = profile(
                        {
                            "scheduler": [p.pid for p in schedulers],
                            "worker": [pid for p in workers for pid in tree(p.pid)],
                        },
                        args.seconds,
                        args.name or args.executor,
                    )
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
                for spy in spies:
                    spy.wait()
                if row["missing"]:
                    break
    finally:
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if celery:
            drop_celery_queues(args.broker_url, prefix)
    print(f"watcher leases: {holders}")
    report(
        args.name or ("cluster_celery" if celery else "cluster_postgres"),
        levels,
        {
            "executor": args.executor,
            "schedulers": 2,
            "triggerers": 2,
            "workers": f"2 x {args.concurrency} processes" + (" (Celery workers)" if celery else ""),
            "settings": settings,
            "lease_holders": holders,
            "seconds_per_level": args.seconds,
        },
    )


if __name__ == "__main__":
    main()
