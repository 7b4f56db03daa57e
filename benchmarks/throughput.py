"""Sustained end to end on local://: one-task runs per second, and latency at each offered load.

    .venv/bin/python benchmarks/throughput.py --rates 100,250,500,1000,1500 --seconds 10

`herald standalone` on SQLite, one DAG with one task, one run per message. A
publisher in this process appends messages to local:// every 10 ms at the
offered rate (one transaction per tick, each message's time taken just before
the call) for `--seconds`; each level's latency is publish -> first line of the
task. The figure is the highest offered rate that Herald kept up with
(>= 95% of it achieved) with its p99 at that rate. Writes throughput.json and
the chart's data; `benchmarks/chart.py` draws it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Stamps, herald, summary_ms, task_dag, write_result

TICK = 0.01


def offer(stamps: Stamps, queues: str | list[str], rate: float, seconds: float, level: int) -> dict[str, object]:
    """Publish at `rate`/s for `seconds` (round-robin over `queues`), then wait for every task."""
    from herald.publishing import local_publish

    published: dict[str, float] = {}
    start = time.monotonic()
    sent = 0
    tick = 0
    while True:
        now = time.monotonic() - start
        if now >= seconds:
            break
        due = int(rate * min(now + TICK, seconds)) - sent
        if due > 0:
            keys = [f"l{level}-{sent + i}" for i in range(due)]
            t0 = time.time()
            queue = queues if isinstance(queues, str) else queues[tick % len(queues)]
            local_publish(queue, [b'{"id": "%s"}' % k.encode() for k in keys])
            for k in keys:
                published[k] = t0
            sent += due
        tick += 1
        stamps.poll()
        sleep = start + tick * TICK - time.monotonic()
        if sleep > 0:
            time.sleep(sleep)
    wall = time.monotonic() - start
    deadline = time.monotonic() + max(30.0, seconds * 3)
    while time.monotonic() < deadline and any(k not in stamps.seen for k in published):
        stamps.poll()
        time.sleep(0.05)
    done = {k: stamps.seen[k] for k in published if k in stamps.seen}
    lat = [done[k] - published[k] for k in done]
    first = min(published.values())
    last = max(done.values()) if done else first
    achieved = len(done) / max(last - first, 1e-9)
    return {
        "offered_per_s": rate,
        "published": len(published),
        "publish_seconds": round(wall, 2),
        "started": len(done),
        "missing": len(published) - len(done),
        "achieved_runs_per_s": round(achieved, 1),
        **summary_ms(lat),
    }


def report(name: str, levels: list[dict[str, object]], extra: dict[str, object]) -> None:
    """Print and write the figure: the highest offered rate kept up with, and the peak."""
    kept = [
        r for r in levels if float(r["achieved_runs_per_s"]) >= 0.95 * float(r["offered_per_s"]) and not r["missing"]
    ]  # type: ignore[arg-type]
    best = max(kept, key=lambda r: float(r["offered_per_s"])) if kept else None  # type: ignore[arg-type]
    peak = max(levels, key=lambda r: float(r["achieved_runs_per_s"])) if levels else None  # type: ignore[arg-type]
    if best and peak:
        print(
            f"{name}: {best['achieved_runs_per_s']} runs/s sustained with p99 {best['p99_ms']} ms "
            f"(highest offered rate kept up with: {best['offered_per_s']}/s); peak achieved "
            f"{peak['achieved_runs_per_s']} runs/s"
        )
    write_result(name, {**extra, "levels": levels, "sustained": best, "peak": peak})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="100,250,500,1000,1500")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--name", default="throughput")
    parser.add_argument("--profile", action="store_true", help="py-spy the standalone process over the run")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    levels = []
    with herald("tput", workers=args.workers) as h:
        queue = "bench_tput"
        h.write_dag("bench", task_dag(h.stamps_path, [f"local://{queue}"]))
        h.use_env()
        proc = h.start_standalone()
        h.watchers_running(1)
        stamps = Stamps(h.stamps_path)
        offer(stamps, queue, 50, 1, -1)  # warm up
        spy = None
        if args.profile:
            import subprocess

            from common import BIN, RESULTS

            RESULTS.mkdir(parents=True, exist_ok=True)
            spy = subprocess.Popen(
                [
                    str(BIN / "py-spy"),
                    "record",
                    "-p",
                    str(proc.pid),
                    "-r",
                    "250",
                    "-f",
                    "raw",
                    "--threads",
                    "-o",
                    str(RESULTS / f"profile_{args.name}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1)
        for i, rate in enumerate(rates):
            row = offer(stamps, queue, rate, args.seconds, i)
            levels.append(row)
            print(
                f"offered {rate:6.0f}/s: achieved {row['achieved_runs_per_s']:7.1f} runs/s  "
                f"p50 {row['p50_ms']:8.1f} ms  p99 {row['p99_ms']:8.1f} ms  missing {row['missing']}"
            )
            if row["missing"] or proc.poll() is not None:
                break
        if spy is not None:
            import signal

            spy.send_signal(signal.SIGINT)
            spy.wait(30)
    report(args.name, levels, {"workers": args.workers, "seconds_per_level": args.seconds})


if __name__ == "__main__":
    main()
