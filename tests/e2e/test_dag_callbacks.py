"""DAG-level on_success_callback / on_failure_callback, end to end in `herald standalone`.

Each callable writes what its context held to a file; the run's detail lists each
callback's outcome. A callback that raises or hangs is recorded as failed with the
reason, and changes neither its run nor any other DAG.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Herald

CALLBACK_DAGS = """
import json, time
from datetime import timedelta
from herald import dag, task

OUT = {out!r}

def record(name):
    def callback(context):
        ti = context.get("ti")
        row = {{
            "name": name,
            "reason": context.get("reason"),
            "run_id": context["run_id"],
            "dag_id": context["dag"].dag_id,
            "run_state": context["dag_run"].state,
            "task_id": ti.task_id if ti is not None else None,
            "conf": context["dag_run"].conf,
        }}
        with open(OUT, "a") as fh:
            fh.write(json.dumps(row) + "\\n")
    callback.__name__ = name
    return callback

def raises(context):
    raise RuntimeError("the callback broke on purpose")

def hangs(context):
    time.sleep(600)

def exits(context):
    import os
    os._exit(3)

@dag(on_success_callback=record("ok_success"), on_failure_callback=record("ok_failure"))
def cb_ok():
    @task
    def first():
        return 1
    @task
    def second(x):
        return x + 1
    second(first())

@dag(
    on_failure_callback=[record("fail_failure"), raises],
    on_success_callback=record("fail_success"),
    default_args={{"on_failure_callback": record("task_failure_from_default_args")}},
)
def cb_fail():
    @task
    def start():
        return 1
    @task
    def boom(x):
        raise ValueError("boom")
    @task
    def after(x):
        return x
    after(boom(start()))

@dag(on_success_callback=[raises, record("after_raise")])
def cb_raises():
    @task
    def fine():
        return 1
    fine()

@dag(on_success_callback=hangs)
def cb_hangs():
    @task
    def fine():
        return 1
    fine()

@dag(on_failure_callback=record("timeout_failure"), dagrun_timeout=timedelta(seconds=1))
def cb_timeout():
    @task
    def slow():
        time.sleep(30)
    slow()

@dag(on_success_callback=exits)
def cb_exits():
    @task
    def fine():
        return 1
    fine()

cb_ok()
cb_exits()
cb_fail()
cb_raises()
cb_hangs()
cb_timeout()
"""


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _callbacks_done(herald: Herald, run_id: str, count: int) -> list[dict[str, Any]] | None:
    detail = herald.cli_json("runs", "show", run_id)
    callbacks: list[dict[str, Any]] = detail["callbacks"]
    ended = [c for c in callbacks if c["state"] in ("success", "failed")]
    return callbacks if len(ended) >= count else None


def _trigger(herald: Herald, dag_id: str) -> str:
    code, out = herald.cli("dags", "trigger", dag_id, "--output", "json")
    assert code == 0, out
    run_id: str = json.loads(out)["run_id"]
    return run_id


def test_dag_callbacks_run_once_with_context_and_failures_are_recorded(herald: Herald, tmp_path: Path) -> None:
    # Given DAGs with callbacks that record, raise and hang
    out = tmp_path / "callbacks.jsonl"
    herald.write_dag("callbacks", CALLBACK_DAGS.format(out=str(out)))
    herald.start({"HERALD_DAG_CALLBACK_TIMEOUT": "3"})

    # When each runs once
    dag_ids = ("cb_ok", "cb_fail", "cb_raises", "cb_hangs", "cb_exits", "cb_timeout")
    runs = {dag_id: _trigger(herald, dag_id) for dag_id in dag_ids}
    done = {
        dag_id: herald.wait_for(lambda r=run_id: _callbacks_done(herald, r, 1), 60, f"the callback of {dag_id}")
        for dag_id, run_id in runs.items()
    }

    # Then the success callback got Airflow's context, once
    rows = _rows(out)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_name.setdefault(row["name"], []).append(row)
    assert [r["run_id"] for r in by_name["ok_success"]] == [runs["cb_ok"]]
    ok = by_name["ok_success"][0]
    assert ok["reason"] == "success" and ok["dag_id"] == "cb_ok" and ok["run_state"] == "success"
    assert ok["task_id"] == "second"  # Airflow's last task instance of the run
    assert "ok_failure" not in by_name and "fail_success" not in by_name
    assert done["cb_ok"] == [c for c in done["cb_ok"] if c["state"] == "success"]

    # the failure callback names the task that failed; the task callback from default_args ran too
    (failure,) = by_name["fail_failure"]
    assert failure["reason"] == "task_failure" and failure["task_id"] == "boom"
    assert failure["run_state"] == "failed" and failure["run_id"] == runs["cb_fail"]
    assert [r["task_id"] for r in by_name["task_failure_from_default_args"]] == ["boom"]
    (fail_cb,) = done["cb_fail"]
    assert fail_cb["kind"] == "on_failure_callback" and fail_cb["state"] == "failed"
    assert "RuntimeError: the callback broke on purpose" in fail_cb["error"]

    # a raising callback is recorded with its traceback; the next callable still runs; the run stays success
    (raised,) = done["cb_raises"]
    assert raised["state"] == "failed" and "Traceback" in raised["error"]
    assert [r["run_id"] for r in by_name["after_raise"]] == [runs["cb_raises"]]
    assert herald.cli_json("runs", "show", runs["cb_raises"])["state"] == "success"

    # a hanging callback is killed at the time limit
    (hung,) = done["cb_hangs"]
    assert hung["state"] == "failed" and "longer than 3 s" in hung["error"]
    assert herald.cli_json("runs", "show", runs["cb_hangs"])["state"] == "success"

    # a callback that ends its process is recorded so; the requests run beside it in that process are run again
    (exited,) = done["cb_exits"]
    assert exited["state"] == "failed" and "exited with code 3" in exited["error"]

    # a run past its dagrun_timeout fails with Airflow's reason
    (timed_out,) = by_name["timeout_failure"]
    assert timed_out["reason"] == "timed_out" and timed_out["run_state"] == "failed"

    # and Herald goes on: another run of the first DAG gets its callback too
    again = _trigger(herald, "cb_ok")
    herald.wait_for(lambda: _callbacks_done(herald, again, 1), 60, "the second callback")
    assert [r["run_id"] for r in _rows(out) if r["name"] == "ok_success"] == [runs["cb_ok"], again]
