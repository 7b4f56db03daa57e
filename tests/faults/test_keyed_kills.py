"""A keyed DAG across kill -9: nothing lost or doubled, and within each key nothing reordered or overlapping.

Messages of 20 devices flow into a DAG with `key="device", max_active_runs_per_key=1`
while Herald is killed at random and restarted. Once drained: one run per event, every
run succeeded, and for each device its runs started in the order of its events, each
after the one before had ended (a run whose task was cut by a kill is retried and still
holds its key).
"""

from __future__ import annotations

import itertools
import random
import time
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import select

from herald.store import tables as t
from tests.e2e.conftest import Herald
from tests.faults.test_kills import HEADER, KILLS, TEST_TIMEOUT, Ledger, ledger, publish_in_background, wait_drained

__all__ = ["ledger"]

DEVICES = 20
MESSAGES = 400

KEYED_DAG = """
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

jobs = Asset("jobs", watchers=[AssetWatcher("w", MessageQueueTrigger("local://jobs"))])

@dag(schedule=[jobs], key="device", max_active_runs_per_key=1)
def faulty():
    @task(retries=5)
    def work(triggering_asset_events):
        return triggering_asset_events[jobs][0].extra["payload"]["n"]
    work()

faulty()
"""


def check_order_per_key(ledger: Ledger) -> None:
    """Each key's runs started in event order, none before the one ahead of it had ended.

    Judged by the task's own start and end (what a worker reports): a run's `started_at`
    is the time its scheduler's pass began, which with two schedulers may precede the
    commit that ended the run ahead of it in another scheduler's pass.
    """
    dr, dre, ti = t.dag_run, t.dag_run_event, t.task_instance
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            select(dr.c.id, dr.c.run_key, ti.c.started_at, ti.c.ended_at, dre.c.event_id)
            .join(dre, dre.c.run_pk == dr.c.id)
            .join(ti, ti.c.run_pk == dr.c.id)
        ).all()
    by_key: dict[str, list[tuple[object, ...]]] = defaultdict(list)
    for r in rows:
        assert r.started_at is not None and r.ended_at is not None, r
        by_key[r.run_key].append((r.started_at, r.id, r.ended_at, r.event_id))
    assert len(by_key) == DEVICES, sorted(by_key)
    for key, runs in by_key.items():
        runs.sort()
        events = [r[3] for r in runs]
        assert events == sorted(events), f"key {key}: runs started out of event order"
        for before, after in itertools.pairwise(runs):
            assert after[0] >= before[2], f"key {key}: run {after[1]}'s task started before run {before[1]}'s ended"


@pytest.mark.timeout(TEST_TIMEOUT)
def test_random_kills_keep_each_keys_order(herald: Herald, ledger: Ledger) -> None:
    herald.write_dag("faulty", HEADER + KEYED_DAG)
    herald.start()
    sender = publish_in_background(herald, [{"n": i, "device": f"d{i % DEVICES}"} for i in range(MESSAGES)])
    rng = random.Random(MESSAGES)
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.3, 1.5))
        herald.kill()
        herald.start()
    sender.join(120)
    wait_drained(herald, ledger, MESSAGES)
    ledger.check(MESSAGES)
    check_order_per_key(ledger)


@pytest.mark.timeout(TEST_TIMEOUT)
def test_two_schedulers_on_postgresql_keep_each_keys_order_when_one_is_killed(tmp_path: Path, pg_database: str) -> None:
    from tests.e2e.test_cluster import Cluster

    cluster = Cluster(Herald(tmp_path / "home", pg_database))
    led = Ledger(pg_database)
    try:
        herald = cluster.herald
        herald.write_dag("faulty", HEADER + KEYED_DAG)
        processes = {
            "scheduler-1": ["scheduler"],
            "scheduler-2": ["scheduler"],
            "triggerer": ["triggerer"],
            "worker-1": ["worker", "--concurrency", "2"],
            "worker-2": ["worker", "--concurrency", "2"],
        }
        for name, args in processes.items():
            cluster.start(name, *args)
        herald.wait_for(
            lambda: [w for w in herald.cli_json("watchers", "list") if w["state"] == "running"], what="the watcher"
        )
        n = 300
        sender = publish_in_background(herald, [{"n": i, "device": f"d{i % DEVICES}"} for i in range(n)], chunk=20)
        herald.wait_for(lambda: led.count(t.dag_run, t.dag_run.c.state == "success") > 30, what="runs flowing")
        cluster.kill("scheduler-1")  # kill -9 in the middle of its passes: the other goes on alone
        sender.join(120)
        herald.wait_for(lambda: led.drained(n), timeout=240, what=f"{n} messages drained")
        led.check(n)
        check_order_per_key(led)
    finally:
        cluster.stop_all()
        led.close()
