"""Herald as separate processes on PostgreSQL: two schedulers, two triggerers, two workers."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from herald.executors.reaper import running
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
        """The name of the process holding the watcher's lease.

        Waits for one: a shared watcher's lease may be free for a moment while the
        triggerers rebalance (one gives it up, the other takes it on its next renewal).
        """
        import psycopg

        owner: tuple[str | None] | None = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with psycopg.connect(self.herald.env["HERALD_DATABASE_URL"]) as conn:
                owner = conn.execute("SELECT lease_owner FROM watcher").fetchone()
            if owner is not None and owner[0]:
                break
            time.sleep(0.2)
        assert owner is not None and owner[0], "nobody took the lease in 30 s"
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
    # local:// on PostgreSQL is read by both (rows locked per batch); its lease moves once expired
    herald.wait_for(lambda: cluster.lease_holder() != dead, timeout=30, what="the lease to move")
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


TIMEOUT_DAG = """
import os, subprocess, time
from datetime import timedelta
from herald import DAG, task

MARKS = {marks!r}

@task
def square(x):
    return x * x

@task
def total(values):
    return sum(values)

with DAG("mapped_on_workers", schedule=None):
    total(square.expand(x=[1, 2, 3, 4]))

@task
def stuck():
    # a child, and one that leaves the worker's process group: both end with the try
    child = subprocess.Popen(["sleep", "600"])
    escaped = subprocess.Popen(["sleep", "600"], start_new_session=True)
    with open(os.path.join(MARKS, "pid.tmp"), "w") as fh:
        fh.write(f"{{os.getpid()}} {{child.pid}} {{escaped.pid}}")
    os.rename(os.path.join(MARKS, "pid.tmp"), os.path.join(MARKS, "pid"))
    time.sleep(600)

with DAG("times_out_on_a_worker", schedule=None, dagrun_timeout=timedelta(seconds=2)):
    stuck()
"""


def test_herald_worker_runs_map_indexes_and_stops_a_try_of_a_timed_out_run(cluster: Cluster, tmp_path: Path) -> None:
    herald = cluster.herald
    marks = tmp_path / "marks"
    marks.mkdir()
    herald.write_dag("timeouts", TIMEOUT_DAG.format(marks=str(marks)))
    cluster.start("scheduler", "scheduler")
    # the worker and the CLI start once the scheduler migrated the database (two migrations at once collide)
    log = herald.home / "scheduler.log"
    herald.wait_for(lambda: "scheduler running" in log.read_text(), what="the scheduler")
    herald.wait_for(lambda: len(herald.cli_json("dags", "list")) == 2, what="the DAGs")
    cluster.start("worker", "worker", "--concurrency", "2")
    mapped = herald.cli_json("dags", "trigger", "mapped_on_workers")["run_id"]
    herald.wait_runs(1, "mapped_on_workers", timeout=60)
    run = herald.cli_json("runs", "show", mapped)
    assert run["state"] == "success", cluster.logs()
    assert [t["map_index"] for t in run["tasks"] if t["task_id"] == "square"] == [0, 1, 2, 3]
    assert next(t["result"] for t in run["tasks"] if t["task_id"] == "total") == 30

    stuck = herald.cli_json("dags", "trigger", "times_out_on_a_worker")["run_id"]
    herald.wait_for(lambda: (marks / "pid").exists(), what="the stuck task to start")
    pids = [int(p) for p in (marks / "pid").read_text().split()]
    herald.wait_runs(1, "times_out_on_a_worker", timeout=60)
    run = herald.cli_json("runs", "show", stuck)
    assert run["state"] == "failed" and run["tasks"][0]["state"] == "skipped"

    # the worker sees the try ended at its next heartbeat and kills the process running it,
    # with everything the try started
    herald.wait_for(lambda: not any(running(p) for p in pids), timeout=30, what="the worker to stop the timed-out try")


CALLBACK_CLUSTER_DAG = """
import json, os
from herald import dag, task

def record(context):
    with open({out!r}, "a") as fh:
        fh.write(json.dumps({{"run_id": context["run_id"], "reason": context["reason"], "pid": os.getpid()}}) + "\\n")

@dag(on_success_callback=record, on_failure_callback=record)
def called_back():
    @task
    def work(dag_run):
        if dag_run.conf.get("fail"):
            raise ValueError("asked to fail")
        return 1
    work()

called_back()
"""


def test_two_schedulers_run_each_dag_callback_once_and_send_each_alert_once(cluster: Cluster, tmp_path: Path) -> None:
    from tests.e2e.test_alerts import Receiver

    # Given two schedulers (each with a callback runner and an alert monitor) and two workers
    herald = cluster.herald
    out = tmp_path / "callbacks.jsonl"
    receiver = Receiver()
    herald.env.update({"HERALD_ALERT_WEBHOOK_URL": receiver.url, "HERALD_ALERT_INTERVAL": "0.2"})
    herald.write_dag("called_back", CALLBACK_CLUSTER_DAG.format(out=str(out)))
    try:
        cluster.start("scheduler-1", "scheduler")
        log = herald.home / "scheduler-1.log"
        herald.wait_for(lambda: "scheduler running" in log.read_text(), what="the first scheduler")
        cluster.start("scheduler-2", "scheduler")
        for name in ("worker-1", "worker-2"):
            cluster.start(name, "worker", "--concurrency", "2")

        # When 20 runs end, 5 of them failed
        run_ids = [
            herald.cli_json("dags", "trigger", "called_back", *(["--conf", '{"fail": true}'] if i % 4 == 0 else []))[
                "run_id"
            ]
            for i in range(20)
        ]
        herald.wait_runs(20, "called_back", timeout=120)

        def all_called() -> list[dict[str, object]] | None:
            lines = [line for line in out.read_text().splitlines() if line] if out.exists() else []
            return [json.loads(line) for line in lines] if len(lines) >= 20 else None

        rows = herald.wait_for(all_called, 60, "20 callbacks")
        # Then each run's callback ran exactly once, with its reason
        assert sorted(r["run_id"] for r in rows) == sorted(run_ids), cluster.logs()
        reasons = Counter(r["reason"] for r in rows)
        assert reasons == {"success": 15, "task_failure": 5}
        for run_id in run_ids[:4]:
            (callback,) = herald.cli_json("runs", "show", run_id)["callbacks"]
            assert callback["state"] == "success" and callback["attempts"] == 1
        # and the failing DAG's alert was sent once by the two monitors (and resolved once, if its last run succeeded)
        # (a last run fails: whatever order the others ended in, the DAG is failing now)
        herald.cli_json("dags", "trigger", "called_back", "--conf", '{"fail": true}')
        herald.wait_runs(21, "called_back", timeout=60)
        herald.wait_for(lambda: len(all_called() or []) >= 21, 60, "the last callback")
        herald.wait_for(lambda: receiver.of("dag:called_back:failing", "firing"), 60, "the alert")
    finally:
        receiver.close()
    firing = receiver.of("dag:called_back:failing", "firing")
    episodes = Counter(b["episode"] for b in firing)
    assert set(episodes.values()) == {1}, receiver.bodies
