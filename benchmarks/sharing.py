"""Ingest with one triggerer and with two sharing one Kafka topic of 6 partitions (PostgreSQL).

    .venv/bin/python benchmarks/sharing.py --messages 20000

For 1 then 2 `herald triggerer` processes: a fresh database (`herald_bench_PID`
on 127.0.0.1:5432), librdkafka's mock Kafka cluster in this process, a topic
of 6 partitions and one watcher on it (one consumer group: the partitions are
split between the triggerers). No scheduler runs: this measures ingest, from
the first message produced to the last event committed. A warm-up round first
waits until every triggerer delivered messages (the group has settled). The
events are counted and checked: as many as messages, none doubled.

On a machine whose cores are shared (the two triggerers, PostgreSQL and the
producer compete for them) the second triggerer adds less than it would on
cores of its own; the result records the load average at the start.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import cpu_seconds, herald, port_open, write_result

KAFKA_DAG = """
from herald import DAG, Asset, AssetWatcher, MessageQueueTrigger, task

@task
def noop():
    return None

orders = Asset("orders", watchers=[AssetWatcher("kafka", MessageQueueTrigger({url!r}, **{options!r}))])
with DAG("on_orders", schedule=[orders]):
    noop()
"""

OPTIONS = {"poll_timeout": 1.0, "session_timeout_ms": 6000, "heartbeat_interval_ms": 500}


def psql(sql: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def counts(url: str) -> tuple[int, int, dict[str, int]]:
    """(events, distinct dedupe keys, messages delivered by each live triggerer)."""
    import psycopg

    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        events, keys = conn.execute("SELECT count(*), count(DISTINCT dedupe_key) FROM asset_event").fetchone()  # type: ignore[misc]
        try:
            rows = conn.execute("SELECT name, received FROM triggerer").fetchall()
        except psycopg.errors.UndefinedTable:
            rows = []
    return int(events), int(keys), {str(n): int(r) for n, r in rows}


def backends(url: str, name: str) -> list[int]:
    """The PostgreSQL backend processes serving the benchmark's database."""
    import psycopg

    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        return [int(r[0]) for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,))]


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def one_run(triggerers: int, messages: int) -> dict[str, Any]:
    from confluent_kafka import Producer
    from tests.integration.kafka_mock import mock_kafka_cluster

    name = f"herald_bench_{os.getpid()}_{triggerers}"
    psql(f"CREATE DATABASE {name}")
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        with mock_kafka_cluster() as kafka, herald(f"sharing{triggerers}", database_url=url) as h:
            kafka.create_topic(topic, partitions=6)
            # confluent-kafka: with aiokafka the mock cluster gives a second member no partitions
            kafka_url = f"kafka://{kafka.bootstrap}/{topic}?group_id={topic}&client=confluent"
            h.write_dag("bench", KAFKA_DAG.format(url=kafka_url, options=OPTIONS))
            env = {"HERALD_MAX_EVENT_BACKLOG": str(10 * messages)}  # no scheduler: no back-pressure
            first = h.spawn("triggerer", env=env)
            h.watchers_running(1, timeout=120)  # migrated once, before the others start
            for _ in range(triggerers - 1):
                h.spawn("triggerer", env=env)
            if first.poll() is not None:
                raise RuntimeError(h.logs())
            # dropped before the mock cluster goes away (librdkafka would log its reconnects)
            producers = [Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 5})]
            sent = 0

            def produce(n: int) -> None:
                nonlocal sent
                producer = producers[0]
                for i in range(n):
                    producer.produce(topic, b'{"n": %d}' % (sent + i), partition=(sent + i) % 6)
                    if i % 10000 == 9999:
                        producer.poll(0)
                sent += n
                assert producer.flush(30) == 0

            # Warm-up: every triggerer has delivered messages, so the group has settled.
            deadline = time.monotonic() + 60
            while True:
                produce(60)
                _, _, delivered = counts(url)
                if len(delivered) == triggerers and all(v > 0 for v in delivered.values()):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the group did not settle: {delivered}\n{h.logs()}")
                time.sleep(0.5)
            warm = sent
            wait_until(lambda: counts(url)[0] >= warm, 60, "the warm-up events")
            before = counts(url)[2]
            triggerer_pids = [p.pid for p in h.procs]
            database_pids = backends(url, name)
            cpu_before = cpu_seconds(triggerer_pids), cpu_seconds(database_pids)
            started = time.monotonic()
            produce(messages)
            produced = time.monotonic() - started
            wait_until(lambda: counts(url)[0] >= sent, 120, f"{sent} events")
            seconds = time.monotonic() - started
            cpu_triggerers = cpu_seconds(triggerer_pids) - cpu_before[0]
            cpu_database = cpu_seconds(database_pids) - cpu_before[1]
            events, keys, after = counts(url)
            time.sleep(3.5)  # one more heartbeat: each triggerer's count of delivered messages
            after = counts(url)[2]
            producers.clear()
    finally:
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    share = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return {
        "triggerers": triggerers,
        "messages": messages,
        "seconds": round(seconds, 3),
        "produce_seconds": round(produced, 3),
        "events_per_s": round(messages / seconds, 1),
        "events": events,
        "distinct_dedupe_keys": keys,
        "sent": sent,
        "delivered_by_each": sorted(share.values(), reverse=True),
        # cores busy during the run: on 2 shared cores these add up to the machine
        "triggerer_cores": round(cpu_triggerers / seconds, 2),
        "postgres_cores": round(cpu_database / seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20000)
    args = parser.parse_args()
    if not port_open(5432):
        raise SystemExit("PostgreSQL is not listening on 127.0.0.1:5432")
    rows = []
    for n in (1, 2):
        row = one_run(n, args.messages)
        rows.append(row)
        ok = row["events"] == row["distinct_dedupe_keys"] == row["sent"]
        print(
            f"{n} triggerer(s): {row['events_per_s']:8.1f} events/s  ({row['messages']} messages in "
            f"{row['seconds']:.2f} s; delivered by each {row['delivered_by_each']}; "
            f"cores busy: triggerers {row['triggerer_cores']}, PostgreSQL {row['postgres_cores']}; "
            f"events == messages, none doubled: {ok})"
        )
    speedup = rows[1]["events_per_s"] / rows[0]["events_per_s"]
    print(f"two triggerers / one: {speedup:.2f}x (target >= 1.6x on cores of their own)")
    write_result("sharing_kafka", {"runs": rows, "speedup": round(speedup, 2), "partitions": 6})


if __name__ == "__main__":
    main()
