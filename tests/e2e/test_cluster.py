"""Herald as separate processes on PostgreSQL: two schedulers, two triggerers, two workers."""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import HERALD, Herald

CLUSTER_DAG = """
import os, time
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

jobs = Asset("jobs", watchers=[AssetWatcher("w", MessageQueueTrigger("local://jobs"))])

@dag(schedule=[jobs])
def cluster_job():
    @task(retries=2)
    def work(triggering_asset_events):
        n = triggering_asset_events[jobs][0].extra["payload"]["n"]
        time.sleep(0.01)
        return {"n": n, "pid": os.getpid()}

    @task
    def after(result):
        return result["n"]

    after(work())

cluster_job()
"""


class Cluster:
    """Herald's processes started one by one against one PostgreSQL database."""

    def __init__(self, herald: Herald) -> None:
        self.herald = herald
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        log = self.herald.home / f"{name}.log"
        with log.open("ab") as out:
            self.procs[name] = subprocess.Popen(
                [HERALD, *args], env=self.herald.env, stdout=out, stderr=subprocess.STDOUT, cwd=self.herald.home
            )

    def kill(self, name: str) -> None:
        self.procs[name].kill()
        self.procs[name].wait()

    def lease_holder(self) -> str:
        """The name of the process holding the watcher's lease."""
        import psycopg

        with psycopg.connect(self.herald.env["HERALD_DATABASE_URL"]) as conn:
            owner = conn.execute("SELECT lease_owner FROM watcher").fetchone()
        assert owner is not None and owner[0], "nobody holds the lease"
        pid = int(owner[0].rsplit(":", 1)[1])
        return next(name for name, proc in self.procs.items() if proc.pid == pid)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()[-2000:]}" for p in Path(self.herald.home).glob("*.log"))


@pytest.fixture
def cluster(tmp_path: Path, pg_database: str) -> Iterator[Cluster]:
    c = Cluster(Herald(tmp_path / "home", pg_database))
    yield c
    c.stop_all()


def test_two_of_each_process_make_one_run_per_message_and_survive_a_killed_triggerer(cluster: Cluster) -> None:
    herald = cluster.herald
    herald.write_dag("cluster", CLUSTER_DAG)
    for name in ("scheduler-1", "scheduler-2"):
        cluster.start(name, "scheduler")
    for name in ("triggerer-1", "triggerer-2"):
        cluster.start(name, "triggerer")
    for name in ("worker-1", "worker-2"):
        cluster.start(name, "worker", "--concurrency", "2")
    herald.wait_for(
        lambda: [w for w in herald.cli_json("watchers", "list") if w["state"] == "running"], what="a running watcher"
    )
    herald.publish("jobs", *[{"n": i} for i in range(100)])
    herald.wait_runs(100, "cluster_job", timeout=120)

    # The triggerer holding the watcher's lease dies; the other takes the watcher over.
    holder = herald.cli_json("watchers", "list")[0]
    assert holder["state"] == "running"
    dead = cluster.lease_holder()
    cluster.kill(dead)
    herald.publish("jobs", *[{"n": i} for i in range(100, 150)])
    runs = herald.wait_runs(150, "cluster_job", timeout=120)

    assert len(runs) == 150, cluster.logs()
    assert cluster.lease_holder() != dead
    assert {r["state"] for r in runs} == {"success"}
    events = [e for r in runs for e in r["event_ids"]]
    assert len(events) == len(set(events)) == 150
    payloads = Counter(e["extra"]["payload"]["n"] for e in herald.cli_json("events", "list", "--limit", "1000"))
    assert sorted(payloads) == list(range(150)) and set(payloads.values()) == {1}
    hosts = {
        t["hostname"].split("/")[0] for r in runs[:60] for t in herald.cli_json("runs", "show", r["run_id"])["tasks"]
    }
    assert len(hosts) == 2, f"both workers should have run tasks: {hosts}"


def test_separate_processes_refuse_sqlite_with_a_clear_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [HERALD, "scheduler"],
        env={"HERALD_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "needs PostgreSQL" in result.stderr
