"""Lost workers in `herald standalone` (SQLite and PostgreSQL): a task that kills the process
running it is not a task failure. The try goes back to the queue under the same number, its
retries untouched, up to HERALD_MAX_LOST_WORKER_REQUEUES times, and each requeue is in its history."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import Herald
from tests.e2e.test_cluster import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

KILLER_DAG = """
import os, signal
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

jobs = Asset("jobs", watchers=[AssetWatcher("w", MessageQueueTrigger("local://jobs"))])
MARK = os.path.join(os.environ["HERALD_HOME"], "killed-once")

@dag(schedule=[jobs])
def killer():
    @task(retries=2)
    def work(triggering_asset_events):
        mode = triggering_asset_events[jobs][0].extra["payload"]
        if mode == "always":
            os.kill(os.getpid(), signal.SIGKILL)  # the process running the try, every time
        if mode == "once" and not os.path.exists(MARK):
            open(MARK, "w").close()
            os._exit(9)
        return mode

    work()

killer()
"""


@pytest.mark.parametrize("groups", ["0", "1"], ids=["worker-process", "try-process-group"])
def test_a_task_that_kills_its_worker_is_requeued_without_using_its_retries(herald: Herald, groups: str) -> None:
    herald.write_dag("killer", KILLER_DAG)
    herald.start({"HERALD_MAX_LOST_WORKER_REQUEUES": "2", "HERALD_TRY_PROCESS_GROUPS": groups})

    # A try that kills its worker only the first time: requeued once, then succeeds as try 1.
    herald.publish("jobs", "once")
    (once,) = herald.wait_runs(1, "killer")
    assert once["state"] == "success", herald.output()
    (task,) = herald.cli_json("runs", "show", once["run_id"])["tasks"]
    assert (task["state"], task["try_number"], task["result"]) == ("success", 1, "once")
    (requeue,) = task["requeues"]
    assert requeue["try_number"] == 1 and "died (exit code 9)" in requeue["reason"], requeue

    # A try that kills its worker every time: requeued twice, then failed with that reason,
    # never retried (retries=2 is left unused: try number 1).
    herald.publish("jobs", "always")
    runs = herald.wait_runs(2, "killer")
    (always,) = [r for r in runs if r["run_id"] != once["run_id"]]
    assert always["state"] == "failed"
    (task,) = herald.cli_json("runs", "show", always["run_id"])["tasks"]
    assert (task["state"], task["try_number"]) == ("failed", 1)
    assert "died (signal SIGKILL)" in task["error"] and "lost 3 times" in task["error"], task["error"]
    assert [r["try_number"] for r in task["requeues"]] == [1, 1]
    assert all("died (signal SIGKILL)" in r["reason"] for r in task["requeues"])

    # The pool is whole again: the next message runs.
    herald.publish("jobs", "fine")
    runs = herald.wait_runs(3, "killer")
    assert sorted(r["state"] for r in runs) == ["failed", "success", "success"]


WORKER_DAG = """
import os, time
from herald import dag, task

MARK = os.path.join(os.environ["HERALD_HOME"], "started-once")

@dag(schedule=None)
def lost_on_a_worker():
    @task
    def work():
        if not os.path.exists(MARK):
            open(MARK, "w").close()
            time.sleep(600)  # until the test kills this herald worker
        return "done"

    work()

lost_on_a_worker()
"""


def test_a_killed_herald_worker_s_try_goes_back_to_the_queue_and_succeeds_on_another(
    tmp_path: Path, pg_database: str
) -> None:
    cluster = Cluster(Herald(tmp_path / "home", pg_database))
    herald = cluster.herald
    herald.env["HERALD_HEARTBEAT_TIMEOUT"] = "3"
    try:
        herald.write_dag("lost", WORKER_DAG)
        cluster.start("scheduler", "scheduler")
        log = herald.home / "scheduler.log"
        herald.wait_for(lambda: "scheduler running" in log.read_text(), what="the scheduler")
        herald.wait_for(lambda: herald.cli_json("dags", "list"), what="the DAG")
        cluster.start("worker-1", "worker", "--concurrency", "1")
        run_id = herald.cli_json("dags", "trigger", "lost_on_a_worker")["run_id"]
        herald.wait_for(lambda: (herald.home / "started-once").exists(), what="the try running on worker-1")
        dead = cluster.procs["worker-1"].pid
        cluster.kill("worker-1")  # kill -9: its pool processes die with it, no heartbeat any more

        cluster.start("worker-2", "worker", "--concurrency", "1")
        herald.wait_runs(1, "lost_on_a_worker", timeout=60)
        run = herald.cli_json("runs", "show", run_id)
        assert run["state"] == "success", cluster.logs()
        (task,) = run["tasks"]
        assert (task["try_number"], task["result"]) == (1, "done")
        assert task["hostname"].split("/")[0].endswith(f":{cluster.procs['worker-2'].pid}")
        (requeue,) = task["requeues"]
        assert requeue["hostname"].endswith(f":{dead}")
        assert "stopped sending heartbeats for 3s" in requeue["reason"]
    finally:
        cluster.stop_all()


PREFETCH_DAG = """
import os, time
from herald import dag, task

@dag(schedule=None)
def slow_pair():
    @task
    def work(dag_run):
        open(os.path.join(os.environ["HERALD_HOME"], "started-" + dag_run.run_id), "w").close()
        time.sleep(5)
        return "done"

    work()

slow_pair()
"""


@pytest.mark.timeout(300)
def test_a_stopping_herald_worker_gives_back_the_tries_it_claimed_ahead_without_counting_them_lost(
    tmp_path: Path, pg_database: str
) -> None:
    import psycopg

    cluster = Cluster(Herald(tmp_path / "home", pg_database))
    herald = cluster.herald
    herald.env["HERALD_WORKER_PREFETCH"] = "1"
    try:
        herald.write_dag("pair", PREFETCH_DAG)
        cluster.start("scheduler", "scheduler")
        herald.wait_for(lambda: "scheduler running" in (herald.home / "scheduler.log").read_text(), what="scheduler")
        herald.wait_for(lambda: herald.cli_json("dags", "list"), what="the DAG")
        first = herald.cli_json("dags", "trigger", "slow_pair")["run_id"]
        second = herald.cli_json("dags", "trigger", "slow_pair")["run_id"]
        cluster.start("worker-1", "worker", "--concurrency", "1")
        pid = cluster.procs["worker-1"].pid

        def held() -> int:
            with psycopg.connect(herald.env["HERALD_DATABASE_URL"]) as conn:
                rows = conn.execute("SELECT hostname FROM task_instance WHERE state = 'running'").fetchall()
            return len([h for (h,) in rows if str(h).endswith(f":{pid}")])

        # One process, one try claimed ahead: worker-1 holds both, runs one.
        herald.wait_for(lambda: held() == 2, what="both tries claimed by the one-process worker")
        herald.wait_for(lambda: list(herald.home.glob("started-*")), what="one try started")
        assert len(list(herald.home.glob("started-*"))) == 1 and held() == 2
        cluster.procs["worker-1"].send_signal(signal.SIGTERM)  # lets the running try finish
        assert cluster.procs["worker-1"].wait(60) == 0
        cluster.start("worker-2", "worker", "--concurrency", "1")
        herald.wait_runs(2, "slow_pair", timeout=150)
        tasks = {r: herald.cli_json("runs", "show", r)["tasks"][0] for r in (first, second)}
        assert {r: t["state"] for r, t in tasks.items()} == {first: "success", second: "success"}, cluster.logs()
        workers = {t["hostname"].split("/")[0].rsplit(":", 1)[1] for t in tasks.values()}
        assert workers == {str(pid), str(cluster.procs["worker-2"].pid)}  # one each
        # The one given back was never lost: same try, no requeue in its history.
        assert [(t["try_number"], t["requeues"]) for t in tasks.values()] == [(1, []), (1, [])]
    finally:
        cluster.stop_all()
