"""Idle CPU and memory of `herald standalone` with many watchers and no traffic.

    .venv/bin/python benchmarks/idle.py cpu --watchers 100 --seconds 30
    .venv/bin/python benchmarks/idle.py memory --watchers 1000 --queues 100
    .venv/bin/python benchmarks/idle.py cpu --watchers 100 --broker redis   # Redis Streams watchers

cpu: 100 watchers, each on its own local:// queue; after every watcher runs and
a settling pause, CPU seconds of the whole process tree (standalone and its
workers) over `--seconds`, as % of one core.

memory: 1,000 watchers on 100 local:// queues (10 watchers share each queue's
consumer), one triggerer (the standalone process, which also holds the
scheduler and the API): its RSS once every watcher runs, and the workers' apart.

--broker redis: each watcher reads its own Redis stream (127.0.0.1:6379) instead
of a local:// queue, whose polling then costs nothing: what is left is the
triggerer's own periodic work (leases, heartbeat, lag) and the scheduler's.

--broker mix: the watchers take turns over local://, Redis Streams, NATS
JetStream (127.0.0.1:4222), RabbitMQ (127.0.0.1:5672) and MQTT (127.0.0.1:1883),
a fifth each, each on its own queue.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cpu_seconds, herald, rss_mib, tree, write_result

DAGS = """
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

URLS = {urls!r}

def watcher(i):
    url = URLS[i % len(URLS)].format(q=i % {queues})
    return AssetWatcher(name=f"idle_w{{i}}", trigger=MessageQueueTrigger(url))

assets = [Asset(f"idle_a{{i}}", watchers=[watcher(i)]) for i in range({watchers})]

def make(k, group):
    condition = group[0]
    for a in group[1:]:
        condition = condition | a

    @dag(schedule=condition, dag_id=f"idle_dag{{k}}")
    def d():
        @task
        def noop():
            return None
        noop()
    return d()

for k in range(0, {watchers}, 100):
    make(k // 100, assets[k:k + 100])
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("cpu", "memory"))
    parser.add_argument("--watchers", type=int, default=None)
    parser.add_argument("--queues", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--settle", type=float, default=10)
    parser.add_argument("--broker", choices=("local", "redis", "mix"), default="local")
    args = parser.parse_args()
    watchers = args.watchers or (100 if args.what == "cpu" else 1000)
    queues = args.queues or (watchers if args.what == "cpu" else 100)
    with herald(f"idle-{args.what}") as h:
        urls = {
            "local": ["local://idle_q{q}"],
            "redis": [f"redis://127.0.0.1:6379/0?stream=idle-{h.port}-{{q}}&group=herald"],
            "mix": [
                "local://idle_q{q}",
                f"redis://127.0.0.1:6379/0?stream=idle-{h.port}-{{q}}&group=herald",
                f"nats://127.0.0.1:4222/idle.{h.port}.{{q}}?stream=IDLE_{h.port}_{{q}}&durable=herald",
                f"amqp://guest:guest@127.0.0.1:5672/%2F?queue=idle-{h.port}-{{q}}",
                f"mqtt://127.0.0.1:1883/idle/{h.port}/{{q}}?qos=1",
            ],
        }[args.broker]
        h.write_dag("idle", DAGS.format(watchers=watchers, queues=queues, urls=urls))
        proc = h.start_standalone()
        h.watchers_running(watchers, timeout=180)
        time.sleep(args.settle)
        if args.what == "cpu":
            pids = tree(proc.pid)
            c0, t0 = cpu_seconds(pids), time.monotonic()
            main0 = cpu_seconds([proc.pid])
            time.sleep(args.seconds)
            c1, t1 = cpu_seconds(pids), time.monotonic()
            main1 = cpu_seconds([proc.pid])
            pct = 100 * (c1 - c0) / (t1 - t0)
            main_pct = 100 * (main1 - main0) / (t1 - t0)
            print(
                f"idle CPU, {watchers} watchers on {queues} {args.broker} queues: {pct:.2f}% of one core "
                f"(standalone process {main_pct:.2f}%, {len(pids) - 1} workers the rest) over {args.seconds:g} s"
            )
            write_result(
                "idle_cpu",
                {
                    "watchers": watchers,
                    "queues": queues,
                    "broker": args.broker,
                    "seconds": args.seconds,
                    "cpu_percent_of_one_core": round(pct, 2),
                    "standalone_process_percent": round(main_pct, 2),
                    "processes": len(pids),
                },
            )
        else:
            main_rss = rss_mib(proc.pid)
            workers = {pid: round(rss_mib(pid), 1) for pid in tree(proc.pid)[1:]}
            print(
                f"memory, {watchers} watchers on {queues} queues: triggerer (standalone process) RSS "
                f"{main_rss:.0f} MiB; workers {', '.join(f'{v:.0f}' for v in workers.values())} MiB"
            )
            write_result(
                "memory",
                {
                    "watchers": watchers,
                    "queues": queues,
                    "standalone_rss_mib": round(main_rss, 1),
                    "worker_rss_mib": list(workers.values()),
                },
            )


if __name__ == "__main__":
    main()
