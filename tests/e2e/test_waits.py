"""Waiting inside a run, end to end: `herald standalone` with ONE worker, tries deferred on approvals.

Five runs wait for their approval while another DAG's task still runs on the only
worker; a matching event resumes its run alone; a wait outlives kill -9; a
timeout fails the try with its reason. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Herald
from tests.e2e.standalone_per_db import standalone

DAGS = """
from herald import DAG, Asset, WaitForAssetEvent, dag, task

approvals = Asset("approvals")

@dag(schedule=None)
def order_flow():
    wait = WaitForAssetEvent(
        task_id="approval",
        asset=approvals,
        match="order_id == '{{ dag_run.conf.order_id }}'",
        timeout=3600,
    )

    @task
    def ship(approval):
        return approval["payload"]["by"]

    ship(wait.output)

order_flow()

@dag(schedule=None)
def impatient():
    WaitForAssetEvent(task_id="approval", asset=approvals, match="order_id == 'never'", timeout=1)

impatient()

payments = Asset("payments")
shipments = Asset("shipments")
readings = Asset("readings")

@dag(schedule=(payments & shipments).within(30, key="order"))
def paid_and_shipped():
    @task
    def done(dag_run):
        return dag_run.conf["key"]

    done()

paid_and_shipped()

@dag(schedule=readings.missing_for(2, key="device"))
def sensor_quiet():
    @task
    def alert(dag_run):
        return dag_run.conf["key"]

    alert()

sensor_quiet()

from datetime import timedelta
from herald import BaseOperator, DateTimeTrigger, TimeDeltaTrigger

class Nap(BaseOperator):
    # an Airflow-style deferrable operator: sleeps without a worker, then resumes in a method

    def __init__(self, seconds, timeout=None, **kwargs):
        super().__init__(**kwargs)
        self.seconds = seconds
        self.defer_timeout = timeout

    def execute(self, context):
        print("going to sleep")
        self.defer(
            trigger=TimeDeltaTrigger(timedelta(seconds=self.seconds)),
            method_name="wake_up",
            kwargs={"note": "rested", "try": context["ti"].try_number},
            timeout=self.defer_timeout,
        )
        raise AssertionError("defer() returns nothing: this line never runs")

    def wake_up(self, context, event=None, note=None, **kwargs):
        return {"note": note, "try": kwargs["try"], "event_type": type(event).__name__, "event": event.isoformat()}

class OddTrigger:
    pass

class Odd(BaseOperator):
    def execute(self, context):
        self.defer(trigger=OddTrigger(), method_name="done")

with DAG(dag_id="napper", schedule=None):
    # long enough to be seen deferred by a test polling through the CLI on a busy machine
    Nap(task_id="nap", seconds=10)

with DAG(dag_id="napper_late", schedule=None):
    Nap(task_id="nap", seconds=3600, timeout=1)

with DAG(dag_id="odd_trigger", schedule=None):
    Odd(task_id="odd")

@dag(schedule=None)
def other():
    @task
    def hello():
        return "hello"

    hello()

other()
"""


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def herald(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herald]:
    with standalone(request.param, tmp_path_factory, DAGS, {"HERALD_WORKERS": "1"}) as h:
        yield h


def _trigger(herald: Herald, dag_id: str, conf: dict[str, Any] | None = None) -> str:
    args = ["dags", "trigger", dag_id] + (["--conf", json.dumps(conf)] if conf else [])
    run_id: str = herald.cli_json(*args)["run_id"]
    return run_id


def _task(herald: Herald, run_id: str, task_id: str) -> dict[str, Any]:
    detail = herald.cli_json("runs", "show", run_id)
    found: dict[str, Any] = next((t for t in detail["tasks"] if t["task_id"] == task_id), {"state": None})
    return found


def _emit(herald: Herald, payload: dict[str, Any], asset: str = "approvals") -> None:
    code, out = herald.cli("events", "emit", asset, "--extra", json.dumps(payload))
    assert code == 0, out


def _keys(herald: Herald, dag_id: str) -> list[str]:
    """The conf key of each run of `dag_id`, oldest first."""
    runs = sorted(herald.runs(dag_id), key=lambda r: r["run_id"])
    return [herald.cli_json("runs", "show", r["run_id"])["conf"]["key"] for r in runs]


def test_waiting_tries_hold_no_worker_resume_on_their_event_only_and_outlive_a_kill(herald: Herald) -> None:
    runs = {f"o{i}": _trigger(herald, "order_flow", {"order_id": f"o{i}"}) for i in range(1, 6)}
    for run_id in runs.values():
        herald.wait_for(lambda r=run_id: _task(herald, r, "approval")["state"] == "deferred", 60, "a deferred try")

    # the only worker is free: another DAG's task runs while the five wait
    other = _trigger(herald, "other")
    herald.wait_for(lambda: _task(herald, other, "hello")["state"] == "success", 60, "the other DAG's task")

    _emit(herald, {"order_id": "o9", "by": "nobody"})  # no run waits for o9
    _emit(herald, {"order_id": "o3", "by": "ann"})
    herald.wait_for(lambda: _task(herald, runs["o3"], "ship")["state"] == "success", 60, "o3 shipped")
    assert _task(herald, runs["o3"], "ship")["result"] == "ann"
    assert [_task(herald, runs[k], "approval")["state"] for k in ("o1", "o2", "o4", "o5")] == ["deferred"] * 4

    herald.kill()  # kill -9: the waits are rows, nothing of them was only in memory
    herald.start()
    waiting = _task(herald, runs["o1"], "approval")
    assert waiting["state"] == "deferred"
    assert (waiting["waiting_for"]["asset"], waiting["waiting_for"]["match"]) == ("approvals", "order_id == 'o1'")
    _emit(herald, {"order_id": "o1", "by": "bob"})
    herald.wait_for(lambda: _task(herald, runs["o1"], "ship")["state"] == "success", 60, "o1 shipped after a restart")
    assert _task(herald, runs["o1"], "ship")["result"] == "bob"
    assert _task(herald, runs["o2"], "approval")["state"] == "deferred"


def test_a_wait_past_its_timeout_fails_with_the_reason(herald: Herald) -> None:
    run_id = _trigger(herald, "impatient")
    herald.wait_for(lambda: _task(herald, run_id, "approval")["state"] == "failed", 60, "the timed-out try")
    error = _task(herald, run_id, "approval")["error"]
    assert error == "timed out after 1s waiting for an event of asset 'approvals' matching `order_id == 'never'`"


def test_a_window_runs_for_the_key_whose_events_both_came_and_not_for_a_lone_one(herald: Herald) -> None:
    _emit(herald, {"order": "A"}, "payments")
    _emit(herald, {"order": "B"}, "payments")  # never shipped
    _emit(herald, {"order": "A"}, "shipments")
    herald.wait_for(lambda: _keys(herald, "paid_and_shipped") == ["A"], 60, "the run of order A")
    _emit(herald, {"order": "C"}, "shipments")
    _emit(herald, {"order": "C"}, "payments")
    herald.wait_for(lambda: len(_keys(herald, "paid_and_shipped")) == 2, 60, "the run of order C")
    assert _keys(herald, "paid_and_shipped") == ["A", "C"]


def test_a_silent_key_makes_one_run_per_silence(herald: Herald) -> None:
    _emit(herald, {"device": "d1"}, "readings")
    herald.wait_for(lambda: _keys(herald, "sensor_quiet") == ["d1"], 60, "d1's silence")
    # d1 is still silent while d2 speaks and then goes quiet: d2's run comes, d1 gets no second one
    _emit(herald, {"device": "d2"}, "readings")
    herald.wait_for(lambda: len(_keys(herald, "sensor_quiet")) == 2, 60, "d2's silence")
    assert _keys(herald, "sensor_quiet") == ["d1", "d2"]


def test_an_operator_that_defers_resumes_in_its_method_with_the_same_try_and_the_trigger_s_moment(
    herald: Herald,
) -> None:
    run_id = _trigger(herald, "napper")
    herald.wait_for(lambda: _task(herald, run_id, "nap")["state"] == "deferred", 60, "the deferred try")
    # the only worker is free while it sleeps
    other = _trigger(herald, "other")
    herald.wait_for(lambda: _task(herald, other, "hello")["state"] == "success", 60, "the other DAG's task")
    herald.wait_for(lambda: _task(herald, run_id, "nap")["state"] == "success", 60, "the resumed try")
    nap = _task(herald, run_id, "nap")
    assert nap["try_number"] == 1
    assert (nap["result"]["note"], nap["result"]["try"], nap["result"]["event_type"]) == ("rested", 1, "DateTime")
    assert "Resuming after the deferral in Nap.wake_up" in herald.cli("tasks", "logs", run_id, "nap")[1]


def test_an_operator_deferral_past_its_timeout_fails_and_an_unknown_trigger_says_why(herald: Herald) -> None:
    late = _trigger(herald, "napper_late")
    odd = _trigger(herald, "odd_trigger")
    herald.wait_for(lambda: _task(herald, late, "nap")["state"] == "failed", 60, "the timed-out deferral")
    assert _task(herald, late, "nap")["error"].startswith("timed out after 1s waiting until ")
    herald.wait_for(lambda: _task(herald, odd, "odd")["state"] == "failed", 60, "the unsupported trigger")
    error = _task(herald, odd, "odd")["error"]
    assert "cannot wait on trigger OddTrigger" in error and "DateTimeTrigger" in error, error
