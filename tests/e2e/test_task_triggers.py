"""Triggers written for Airflow, end to end: an operator defers on its own trigger, a triggerer runs it.

`herald standalone` (its triggerer inside) on SQLite and PostgreSQL, with a DAG file
that defines its own trigger class and imports another from a module beside it,
as an Airflow DAG folder does. The event resumes the task in its method; a trigger
that raises, or does not fire in time, fails it; a trigger waiting when Herald is
killed runs again after the restart and the task resumes once. Then separate
processes on PostgreSQL: the triggerer holding a trigger is killed, another runs it.
"""

from __future__ import annotations

import json
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Herald
from tests.e2e.standalone_per_db import drop_database, fresh_database
from tests.e2e.test_cluster import Cluster

HELPER = """
import asyncio
from herald import BaseTrigger, TriggerEvent


class Sleepy(BaseTrigger):
    def __init__(self, seconds, payload):
        super().__init__()
        self.seconds, self.payload = seconds, payload

    def serialize(self):
        return ("waiting_triggers.Sleepy", {"seconds": self.seconds, "payload": self.payload})

    async def run(self):
        self.log.info("sleeping %ss", self.seconds)
        await asyncio.sleep(self.seconds)
        yield TriggerEvent(self.payload)
"""

DAGS = """
import asyncio, os
from herald import DAG, BaseOperator, BaseTrigger, TriggerEvent
from waiting_triggers import Sleepy


class FileAppears(BaseTrigger):
    def __init__(self, path, poll=0.05):
        super().__init__()
        self.path, self.poll = path, poll

    def serialize(self):
        return ("dags.FileAppears", {"path": self.path, "poll": self.poll})

    async def run(self):
        with open(self.path + ".runs", "a") as f:
            f.write(f"{os.getpid()}\\n")
        while not os.path.exists(self.path):
            await asyncio.sleep(self.poll)
        with open(self.path) as f:
            yield TriggerEvent({"file": self.path, "text": f.read()})


class Boom(BaseTrigger):
    def serialize(self):
        return ("dags.Boom", {})

    async def run(self):
        await asyncio.sleep(0)
        raise RuntimeError("the source is gone")
        yield


class WaitFor(BaseOperator):
    template_fields = ("path",)

    def __init__(self, path=None, trigger="file", defer_timeout=None, **kwargs):
        super().__init__(**kwargs)
        self.path, self.trigger, self.defer_timeout = path, trigger, defer_timeout

    def execute(self, context):
        made = {"file": lambda: FileAppears(self.path), "sleepy": lambda: Sleepy(0.2, {"slept": True}),
                "boom": Boom}[self.trigger]()
        print(f"deferring on {self.trigger}")
        self.defer(trigger=made, method_name="execute_complete", kwargs={"asked": context["ti"].try_number},
                   timeout=self.defer_timeout)

    def execute_complete(self, context, event=None, asked=None):
        print(f"resumed with {event}")
        if self.path:
            with open(self.path + ".resumed", "a") as f:
                f.write("resumed\\n")
        return {"event": event, "asked": asked, "try": context["ti"].try_number}


with DAG(dag_id="file_wait", schedule=None):
    WaitFor(task_id="wait", path="{{ dag_run.conf.path }}")

with DAG(dag_id="sleepy", schedule=None):
    WaitFor(task_id="wait", trigger="sleepy")

with DAG(dag_id="boom", schedule=None):
    WaitFor(task_id="wait", trigger="boom", retries=1, retry_delay=0)

with DAG(dag_id="late", schedule=None):
    WaitFor(task_id="wait", path="{{ dag_run.conf.path }}", defer_timeout=1)
"""


def _folder(herald: Herald) -> None:
    (herald.dags / "waiting_triggers.py").write_text(textwrap.dedent(HELPER))
    herald.write_dag("dags", DAGS)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def herald(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herald]:
    home = tmp_path_factory.mktemp(f"triggers-{request.param}")
    url, dropped = fresh_database(request.param, home)
    h = Herald(Path(home) / "home", url)
    _folder(h)
    try:
        h.start()
        yield h
    finally:
        if h.proc is not None:
            h.stop()
        drop_database(dropped)


def _trigger(herald: Herald, dag_id: str, conf: dict[str, Any] | None = None) -> str:
    args = ["dags", "trigger", dag_id] + (["--conf", json.dumps(conf)] if conf else [])
    run_id: str = herald.cli_json(*args)["run_id"]
    return run_id


def _task(herald: Herald, run_id: str) -> dict[str, Any]:
    detail = herald.cli_json("runs", "show", run_id)
    found: dict[str, Any] = detail["tasks"][0] if detail["tasks"] else {"state": None}
    return found


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_trigger_in_the_dag_file_resumes_the_task_in_its_method_with_its_event(herald: Herald) -> None:
    flag = herald.home / "flag-1"
    run_id = _trigger(herald, "file_wait", {"path": str(flag)})
    herald.wait_for(lambda: _lines(Path(f"{flag}.runs")) == 1, 60, "the trigger to run")
    waiting = _task(herald, run_id)
    assert waiting["state"] == "deferred"
    assert waiting["waiting_for"]["trigger"] == f"dags.FileAppears(path={str(flag)!r}, poll=0.05)"
    assert waiting["waiting_for"]["triggerer"] == "standalone"
    flag.write_text("ready")
    herald.wait_for(lambda: _task(herald, run_id)["state"] == "success", 60, "the resumed task")
    done = _task(herald, run_id)
    assert done["result"] == {"event": {"file": str(flag), "text": "ready"}, "asked": 1, "try": 1}
    assert done["try_number"] == 1


def test_a_trigger_from_a_module_beside_the_dag_resumes_the_task(herald: Herald) -> None:
    run_id = _trigger(herald, "sleepy")
    herald.wait_for(lambda: _task(herald, run_id)["state"] == "success", 60, "the resumed task")
    assert _task(herald, run_id)["result"] == {"event": {"slept": True}, "asked": 1, "try": 1}
    # One log for the try, as Airflow shows it: before the deferral, the trigger's own lines, after.
    code, log = herald.cli("tasks", "logs", run_id, "wait")
    lines = [
        "deferring on sleepy",
        "INFO waiting_triggers.Sleepy: sleeping 0.2s",
        "The trigger waiting_triggers.Sleepy",
        "resumed with {'slept': True}",
    ]
    assert code == 0 and all(line in log for line in lines), log
    assert [log.index(line) for line in lines] == sorted(log.index(line) for line in lines), log


def test_a_trigger_that_raises_fails_the_task_once_per_try(herald: Herald) -> None:
    run_id = _trigger(herald, "boom")
    herald.wait_for(lambda: _task(herald, run_id)["state"] == "failed", 60, "the failed task")
    task = _task(herald, run_id)
    assert task["try_number"] == 2  # its retry deferred again, and its trigger raised again
    assert task["error"].startswith("TaskDeferralError: Trigger failure: dags.Boom raised: RuntimeError")
    assert "the source is gone" in task["error"]
    assert [t["reason"] for t in task["tries"]] == ["failed", "failed"]
    code, log = herald.cli("tasks", "logs", run_id, "wait")
    assert code == 0 and "The trigger failed:" in log and "RuntimeError: the source is gone" in log


def test_a_trigger_that_does_not_fire_in_time_fails_the_task(herald: Herald) -> None:
    run_id = _trigger(herald, "late", {"path": str(herald.home / "never")})
    herald.wait_for(lambda: _task(herald, run_id)["state"] == "failed", 60, "the timed-out task")
    error = _task(herald, run_id)["error"]
    assert error.startswith("TaskDeferralTimeout: Trigger/execution timeout: trigger dags.FileAppears(")
    assert error.endswith("did not fire within 1s")


def test_a_trigger_waiting_when_herald_is_killed_runs_again_and_resumes_the_task_once(herald: Herald) -> None:
    flag = herald.home / "flag-kill"
    run_id = _trigger(herald, "file_wait", {"path": str(flag)})
    herald.wait_for(lambda: _lines(Path(f"{flag}.runs")) == 1, 60, "the trigger to run")
    herald.kill()  # kill -9: the trigger's lease is its standalone's own name, taken back at once
    herald.start()
    herald.wait_for(lambda: _lines(Path(f"{flag}.runs")) == 2, 60, "the trigger to run again")
    flag.write_text("after the restart")
    herald.wait_for(lambda: _task(herald, run_id)["state"] == "success", 60, "the resumed task")
    assert _task(herald, run_id)["result"]["event"]["text"] == "after the restart"
    assert _lines(Path(f"{flag}.resumed")) == 1


def _holders(herald: Herald, run_ids: list[str]) -> list[str | None]:
    return [(_task(herald, r).get("waiting_for") or {}).get("triggerer") for r in run_ids]


def test_a_killed_triggerer_s_triggers_run_in_another_and_each_task_resumes_once(
    tmp_path: Path, pg_database: str
) -> None:
    cluster = Cluster(Herald(tmp_path / "home", pg_database))
    herald = cluster.herald
    _folder(herald)
    try:
        cluster.start("scheduler", "scheduler")
        cluster.start("worker", "worker", "--concurrency", "2")
        for name in ("triggerer-1", "triggerer-2"):
            cluster.start(name, "triggerer")
        flags = [herald.home / f"c{i}" for i in range(4)]
        herald.wait_for(lambda: "file_wait" in {d["dag_id"] for d in herald.cli_json("dags", "list")}, 90, "the DAGs")
        run_ids = [_trigger(herald, "file_wait", {"path": str(f)}) for f in flags]
        herald.wait_for(lambda: all(_holders(herald, run_ids)), 90, "every trigger taken")
        herald.wait_for(lambda: all(_lines(Path(f"{f}.runs")) == 1 for f in flags), 60, "every trigger to run")

        holder = _holders(herald, run_ids)[0]
        assert holder is not None
        pid = int(holder.rsplit(":", 1)[1])
        dead = next(name for name, proc in cluster.procs.items() if proc.pid == pid)
        cluster.procs[dead].send_signal(signal.SIGKILL)
        cluster.procs[dead].wait()
        # its triggers are taken by the other once their leases pass, and run again from the start
        herald.wait_for(
            lambda: all(h is not None and h != holder for h in _holders(herald, run_ids)),
            90,
            "the other triggerer to take them",
        )
        herald.wait_for(lambda: _lines(Path(f"{flags[0]}.runs")) == 2, 60, "the dead one's trigger to run again")
        for flag in flags:
            flag.write_text("here")
        for run_id in run_ids:
            herald.wait_for(lambda r=run_id: _task(herald, r)["state"] == "success", 60, "every task to resume")
        assert [_lines(Path(f"{f}.resumed")) for f in flags] == [1, 1, 1, 1], cluster.logs()
    finally:
        cluster.stop_all()
