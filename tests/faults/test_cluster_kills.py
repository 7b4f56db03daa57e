"""The kill -9 harness on the multi-process set-up (PostgreSQL): two schedulers, two
triggerers, two workers; one of each is killed and restarted while messages flow."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Herald
from tests.e2e.test_cluster import Cluster
from tests.faults.test_kills import DRAIN_TIMEOUT, MESSAGES, TEST_TIMEOUT, Ledger, publish_in_background

DAG = """
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

jobs = Asset("jobs", watchers=[AssetWatcher("w", MessageQueueTrigger("local://jobs"))])

@dag(schedule=[jobs])
def faulty():
    @task(retries=5)
    def work(triggering_asset_events):
        return triggering_asset_events[jobs][0].extra["payload"]["n"]
    work()

faulty()
"""

COMMANDS = {
    "scheduler-1": ["scheduler"],
    "scheduler-2": ["scheduler"],
    "triggerer-1": ["triggerer"],
    "triggerer-2": ["triggerer"],
    "worker-1": ["worker", "--concurrency", "2"],
    "worker-2": ["worker", "--concurrency", "2"],
}


@pytest.fixture
def cluster(tmp_path: Path, pg_database: str) -> Iterator[Cluster]:
    c = Cluster(Herald(tmp_path / "home", pg_database))
    yield c
    c.stop_all()


@pytest.mark.timeout(TEST_TIMEOUT)
def test_killing_a_scheduler_a_triggerer_and_a_worker_loses_and_doubles_nothing(cluster: Cluster) -> None:
    herald = cluster.herald
    ledger = Ledger(herald.env["HERALD_DATABASE_URL"])
    try:
        herald.write_dag("faulty", DAG)
        for name, args in COMMANDS.items():
            cluster.start(name, *args)
        herald.wait_for(
            lambda: [w for w in herald.cli_json("watchers", "list") if w["state"] == "running"], what="the watcher"
        )
        n = min(MESSAGES, 10000)  # the cluster shares 2 cores between 6 processes here
        sender = publish_in_background(herald, [{"n": i} for i in range(n)])
        rng = random.Random(n)
        for kind in ("triggerer", "scheduler", "worker"):
            time.sleep(rng.uniform(0.5, 1.5))
            victim = cluster.lease_holder() if kind == "triggerer" else f"{kind}-{rng.choice([1, 2])}"
            cluster.kill(victim)
            time.sleep(0.5)
            cluster.start(victim, *COMMANDS[victim])
        sender.join(120)
        # A try running on the killed worker is lost once its heartbeat stops (30 s) and queued again.
        herald.wait_for(lambda: ledger.drained(n), timeout=DRAIN_TIMEOUT, what=f"{n} messages drained")
        ledger.check(n)
    finally:
        ledger.close()
