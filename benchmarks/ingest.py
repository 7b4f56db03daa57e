"""Ingest alone: messages per second turned into committed events by one triggerer process.

    .venv/bin/python benchmarks/ingest.py --broker local,redis,kafka --messages 50000
    .venv/bin/python benchmarks/ingest.py --broker sqs --messages 1000     # moto's SQS server
    .venv/bin/python benchmarks/ingest.py --broker sqs --messages 1000 --options receives=1

No scheduler runs: a backlog of `--messages` is put in the broker first, then
one triggerer (in this process, on SQLite, back-pressure off) consumes it
through the delivery contract (events + queue entries + ack in one
transaction per batch, then the broker's ack). The rate is taken between the
first committed event and the last, so connecting and joining a consumer
group are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import moto_server, port_open, sqs_client, write_result

BROKERS = ("local", "redis", "kafka", "sqs")


async def fill(broker: str, url: str, n: int, extra: dict[str, Any]) -> None:
    bodies = [b'{"id": "%d", "reading": 21.5, "sensor": "s-%d"}' % (i, i % 100) for i in range(n)]
    if broker == "local":
        from herald.publishing import local_publish

        for i in range(0, n, 2000):
            await asyncio.to_thread(local_publish, url.removeprefix("local://"), bodies[i : i + 2000])
    elif broker == "redis":
        import redis.asyncio as aioredis

        client = aioredis.Redis(host="127.0.0.1", port=6379)
        stream = extra["stream"]
        for i in range(0, n, 2000):
            pipe = client.pipeline(transaction=False)
            for body in bodies[i : i + 2000]:
                pipe.xadd(stream, {"body": body})
            await pipe.execute()
        await client.aclose()
    elif broker == "sqs":
        client = extra["client"]
        for i in range(0, n, 10):
            entries = [{"Id": str(j), "MessageBody": b.decode()} for j, b in enumerate(bodies[i : i + 10])]
            await asyncio.to_thread(client.send_message_batch, QueueUrl=extra["queue_url"], Entries=entries)
    elif broker == "kafka":
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": extra["bootstrap"], "linger.ms": 5})
        for body in bodies:
            while True:
                try:
                    producer.produce(extra["topic"], body)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(30)


async def measure(broker: str, n: int, options: str = "") -> dict[str, Any]:
    from sqlalchemy import func, select

    from herald import MessageQueueTrigger, notify
    from herald.loader import DagBag
    from herald.sdk.assets import Asset
    from herald.sdk.dag import DAG, Task
    from herald.sdk.watcher import AssetWatcher
    from herald.store import tables as t
    from herald.store.db import Database, make_engine
    from herald.store.migrate import upgrade
    from herald.store.sync import sync_bag
    from herald.triggerer.triggerer import Triggerer

    home = Path(tempfile.mkdtemp(prefix=f"herald-bench-ingest-{broker}-"))
    db_url = f"sqlite:///{home / 'herald.db'}"
    os.environ["HERALD_HOME"] = str(home)
    os.environ["HERALD_DATABASE_URL"] = db_url
    tag = uuid.uuid4().hex[:8]
    extra: dict[str, Any] = {}
    cluster_cm = None
    if broker == "local":
        url = f"local://ingest_{tag}"
    elif broker == "redis":
        if not port_open(6379):
            raise RuntimeError("Redis is not listening on 127.0.0.1:6379")
        extra["stream"] = f"ingest-{tag}"
        url = f"redis://127.0.0.1:6379/0?stream={extra['stream']}&group=herald"
    elif broker == "sqs":
        cluster_cm = moto_server()
        port = cluster_cm.__enter__()
        extra["client"] = sqs_client(port)
        extra["queue_url"] = extra["client"].create_queue(QueueName=f"ingest-{tag}")["QueueUrl"]
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        url = f"sqs+http://127.0.0.1:{port}/000000000000/ingest-{tag}?region=us-east-1"
    else:
        from tests.integration.kafka_mock import mock_kafka_cluster

        cluster_cm = mock_kafka_cluster()
        cluster = cluster_cm.__enter__()
        extra["topic"] = f"ingest-{tag}"
        cluster.create_topic(extra["topic"], partitions=1)
        extra["bootstrap"] = cluster.bootstrap
        url = f"kafka://{cluster.bootstrap}/{extra['topic']}?group_id=herald"
    if options:
        url += ("&" if "?" in url else "?") + options
    db = Database(db_url)
    listener = notify.make_listener(db_url)
    triggerer: Triggerer | None = None
    try:
        upgrade(db.engine)
        listener.start()
        await fill(broker, url, n, extra)
        bag = DagBag(folder=home)
        asset = Asset("readings", watchers=[AssetWatcher("w", MessageQueueTrigger(url))])
        dag = DAG("on_readings", schedule=[asset])
        dag.add_task(Task("noop", lambda: None))
        bag.dags[dag.dag_id] = dag
        catalog = await db.run(sync_bag, db.engine, bag)
        triggerer = Triggerer(db, listener, lambda: None, max_backlog=10**9)
        samples: list[tuple[float, int, float]] = []
        done = threading.Event()

        def count() -> None:
            engine = make_engine(db_url, pool_size=1)
            with engine.connect() as conn:
                while not done.is_set():
                    # the highest id is the count (a new database, ids from 1, no event deleted): a
                    # count(*) every 20 ms would scan the table, a cost of its own of ~5% of a core
                    c = conn.execute(select(func.max(t.asset_event.c.id))).scalar_one() or 0
                    conn.rollback()
                    samples.append((time.monotonic(), int(c), time.process_time()))
                    if c >= n:
                        break
                    time.sleep(0.02)
            engine.dispose()

        counter = threading.Thread(target=count, daemon=True)
        started = time.monotonic()
        triggerer.update(catalog.watchers, catalog.consumers)
        counter.start()
        while counter.is_alive() and time.monotonic() - started < 300:
            await asyncio.sleep(0.1)
        done.set()
        first = next((s for s in samples if s[1] > 0), None)
        last = samples[-1] if samples else None
        if first is None or last is None or last[1] <= first[1]:
            raise RuntimeError(f"no events committed ({samples[-3:]})")
        rate = (last[1] - first[1]) / (last[0] - first[0])
        # CPU of the whole process (every thread: the triggerer, its database thread, the
        # counter; Kafka's mock broker too) per committed event: less disturbed by the
        # machine's load than the rate
        cpu_us = (last[2] - first[2]) / (last[1] - first[1]) * 1e6
        return {
            "broker": broker,
            "messages": n,
            "committed": last[1],
            "seconds": round(last[0] - first[0], 3),
            "events_per_s": round(rate, 1),
            "cpu_us_per_event": round(cpu_us, 1),
            "seconds_from_start": round(last[0] - started, 3),
        }
    finally:
        if triggerer is not None:
            await triggerer.stop()
        listener.stop()
        db.close()
        if cluster_cm is not None:
            cluster_cm.__exit__(None, None, None)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", default=",".join(BROKERS))
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--options", default="", help="trigger options added to the URL's query, e.g. receives=1")
    args = parser.parse_args()
    rows = []
    for broker in args.broker.split(","):
        try:
            row = asyncio.run(measure(broker, args.messages, args.options))
            print(
                f"ingest {broker:6s}: {row['events_per_s']:9.0f} events/s committed "
                f"({row['committed']} in {row['seconds']} s), {row['cpu_us_per_event']:.0f} us CPU per event"
            )
        except Exception as exc:
            row = {"broker": broker, "error": f"{type(exc).__name__}: {exc}"[:2000]}
            print(f"ingest {broker:6s}: FAILED {row['error'][:300]}")
        rows.append(row)
    write_result("ingest", {"messages": args.messages, "options": args.options, "results": rows})


if __name__ == "__main__":
    main()
