"""5,000 single publishes to local:// from another process while `herald standalone` runs.

    .venv/bin/python benchmarks/local_publish.py --messages 5000
    .venv/bin/python benchmarks/local_publish.py --messages 5000 --direct   # the old way, for comparison
    .venv/bin/python benchmarks/local_publish.py --messages 5000 --publishers 8   # 8 processes at once

`herald standalone` on SQLite, one DAG with one task, one run per message. A
publisher process calls `herald.publishing.local_publish(queue, [body])` once
per message, one after the other (each call returns once its message is
committed). Through the running Herald's publish inbox by default (a SQLite
file of its own that Herald moves into the queue: `herald.triggerer.inbox`);
with `--direct` it writes the database itself, as every publisher did before
(`store.local_queue.put`). Reports the publish rate (messages / the
publisher's wall time) and runs/s from the first publish to the last task
start.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Stamps, cpu_seconds, herald, task_dag, tree, write_result

PUBLISHER = """
import json, sys, time
from herald.config import Settings
from herald.publishing import local_publish
from herald.store import local_queue
from herald.triggerer.local_queue import _engine

n, direct, me = int(sys.argv[1]), sys.argv[2] == "direct", sys.argv[3]
settings = Settings()
engine = _engine(settings.db_url)
local_publish("warmup", [b"{}"], settings=settings)  # connect and import before the clock starts
first = time.time()
for i in range(n):
    body = b'{"id": "m%s-%d"}' % (me.encode(), i)
    if direct:
        local_queue.put(engine, "lp", [body])
    else:
        local_publish("lp", [body], settings=settings)
print(json.dumps({"first": first, "last": time.time()}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--direct", action="store_true", help="write the database directly (the old way)")
    parser.add_argument("--publishers", type=int, default=1, help="publisher processes, each sending its share")
    args = parser.parse_args()
    n = args.messages
    with herald("local-publish", workers=args.workers) as h:
        h.write_dag("bench", task_dag(h.stamps_path, ["local://lp"]))
        standalone = h.start_standalone()
        h.watchers_running(1)
        pids = tree(standalone.pid)
        cpu_before = cpu_seconds([standalone.pid]), cpu_seconds(pids)
        stamps = Stamps(h.stamps_path)
        mode = "direct" if args.direct else "inbox"
        share = n // args.publishers
        n = share * args.publishers
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", PUBLISHER, str(share), mode, str(k)],
                env=h.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for k in range(args.publishers)
        ]
        spans = []
        for proc in procs:
            out, err = proc.communicate(timeout=900)
            if proc.returncode != 0:
                raise SystemExit(f"a publisher failed:\n{err}")
            spans.append(json.loads(out.strip().splitlines()[-1]))
        times = {"first": min(s["first"] for s in spans), "last": max(s["last"] for s in spans)}
        if not stamps.wait_count(n, timeout=max(120.0, n / 20)):
            raise SystemExit(f"only {len(stamps.seen)} of {n} tasks started:\n{h.logs()}")
        last_start = max(stamps.seen.values())
        herald_cpu = cpu_seconds([standalone.pid]) - cpu_before[0]
        tree_cpu = cpu_seconds(pids) - cpu_before[1]
        publish_s = times["last"] - times["first"]
        total_s = last_start - times["first"]
        result = {
            "messages": n,
            "mode": mode,
            "workers": args.workers,
            "publishers": args.publishers,
            "publish_seconds": round(publish_s, 2),
            "publish_per_s": round(n / publish_s, 1),
            "first_publish_to_last_task_start_s": round(total_s, 2),
            "runs_per_s": round(n / total_s, 1),
            "tasks_started": len(stamps.seen),
            "standalone_cpu_ms_per_run": round(herald_cpu / n * 1000, 3),
            "herald_cpu_ms_per_run": round(tree_cpu / n * 1000, 3),
        }
        print(
            f"{n} single publishes ({mode}, {args.publishers} publisher(s)) while herald standalone runs: "
            f"{result['publish_per_s']} msg/s published, "
            f"{result['runs_per_s']} runs/s from the first publish to the last task start ({total_s:.2f} s); "
            f"CPU per run: standalone {result['standalone_cpu_ms_per_run']} ms, "
            f"with its workers {result['herald_cpu_ms_per_run']} ms"
        )
        write_result(f"local_publish_{mode}_{args.publishers}", result)


if __name__ == "__main__":
    main()
