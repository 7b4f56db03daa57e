"""Latency, one message at a time: publish call -> first line of the run's first task.

    .venv/bin/python benchmarks/latency.py --broker local --messages 200
    .venv/bin/python benchmarks/latency.py --broker all --messages 100
    .venv/bin/python benchmarks/latency.py --broker local,redis --messages 5 --warmup 1 --pause 45   # after idle

Brokers: local (embedded queue), redis (Redis Streams on 127.0.0.1:6379), nats
(JetStream on 127.0.0.1:4222), sqs (moto_server started here), kafka
(librdkafka's mock cluster started here). Herald runs as `herald standalone` on
SQLite with 2 workers. Each message is published only after the previous one's
task has started, with a short random pause, so no message queues behind another.
With `--pause S` each message waits S seconds after the previous one's task
started instead: the first message after an idle spell (Herald's re-checks of
the database have backed off by then; the message must come with its wake-up).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import herald, moto_server, port_open, sqs_client, summary_ms, task_dag, write_result

BROKERS = ("local", "redis", "nats", "sqs", "kafka")


@contextmanager
def broker_url(broker: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A fresh queue of `broker` and the env Herald needs for it."""
    tag = uuid.uuid4().hex[:8]
    if broker == "local":
        yield f"local://bench_{tag}", {}
    elif broker == "redis":
        if not port_open(6379):
            raise RuntimeError("Redis is not listening on 127.0.0.1:6379 (make services)")
        yield f"redis://127.0.0.1:6379/0?stream=bench-{tag}&group=herald", {}
    elif broker == "nats":
        if not port_open(4222):
            raise RuntimeError("NATS is not listening on 127.0.0.1:4222 (make services)")
        yield f"nats://127.0.0.1:4222/bench.{tag}?stream=BENCH_{tag}&durable=herald", {}
    elif broker == "sqs":
        with moto_server() as port:
            queue_url = sqs_client(port).create_queue(QueueName=f"bench-{tag}")["QueueUrl"]
            account = queue_url.rstrip("/").split("/")[-2]
            env = {
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
            yield f"sqs+http://127.0.0.1:{port}/{account}/bench-{tag}?region=us-east-1", env
    elif broker == "kafka":
        from tests.integration.kafka_mock import mock_kafka_cluster

        with mock_kafka_cluster() as cluster:
            cluster.create_topic(f"bench-{tag}", partitions=1)
            yield f"kafka://{cluster.bootstrap}/bench-{tag}?group_id=herald", {}
    else:
        raise ValueError(broker)


def measure(broker: str, messages: int, warmup: int = 5, pause: float | None = None) -> dict[str, object]:
    import os

    from herald.publishing import publish

    with broker_url(broker) as (url, env), herald(f"lat-{broker}") as h:
        h.write_dag("bench", task_dag(h.stamps_path, [url]))
        h.use_env()
        for k, v in env.items():
            os.environ[k] = v
        h.start_standalone(env=env)
        h.watchers_running(1)
        from common import Stamps

        stamps = Stamps(h.stamps_path)
        latencies: list[float] = []
        lost = 0
        for i in range(warmup + messages):
            key = f"m{i}"
            t0 = time.time()
            publish(url, {"id": key})
            started = stamps.wait_for(key, timeout=30)
            if started is None:
                lost += 1
                continue
            if i >= warmup:
                latencies.append(started - t0)
            time.sleep(random.uniform(0.005, 0.03) if pause is None else pause)
        return {
            "broker": broker,
            "url": url.split("?")[0],
            "timeouts": lost,
            "pause_s": pause,
            **summary_ms(latencies),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", default="all", help="one of " + ", ".join(BROKERS) + ", or all")
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5, help="messages sent first and not counted")
    parser.add_argument(
        "--pause", type=float, default=None, help="seconds between messages (default: 5 to 30 ms at random)"
    )
    args = parser.parse_args()
    brokers = BROKERS if args.broker == "all" else tuple(args.broker.split(","))
    rows = []
    for broker in brokers:
        try:
            row = measure(broker, args.messages, args.warmup, args.pause)
        except Exception as exc:  # one broker down must not hide the others' figures
            row = {"broker": broker, "error": f"{type(exc).__name__}: {exc}"[:2000]}
        rows.append(row)
        if "error" in row:
            print(f"latency {broker:6s}: FAILED {row['error'][:300]}")
        else:
            print(
                f"latency {broker:6s}: p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  "
                f"max {row['max_ms']:7.2f} ms  (n={row['n']}, timeouts={row['timeouts']})"
            )
        with contextlib.suppress(Exception):
            write_result(f"latency_{broker}", {"messages": args.messages, "result": row})
    if len(brokers) > 1:
        write_result("latency", {"messages": args.messages, "results": rows})


if __name__ == "__main__":
    main()
