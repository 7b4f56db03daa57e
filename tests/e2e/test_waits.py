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
from herald import Asset, WaitForAssetEvent, dag, task

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
