"""The size caps as functions: log tails, dead-letter heads, result sizes, and what a try keeps."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from herald.executors.records import TaskResult
from herald.executors.worker import run_task
from herald.sdk.dag import DAG, dag, task
from herald.store.states import TryState
from herald.store.storable import SizeLimits, TailBuffer, body_head, json_size, log_tail, size_problem
from tests.unit.airflow.helpers import request


def test_a_log_within_the_cap_is_kept_as_it_is() -> None:
    assert log_tail("short\n", 1024) == "short\n"
    assert log_tail("é" * 512, 1024) == "é" * 512  # 1024 bytes exactly


def test_a_long_log_keeps_its_tail_within_the_cap_and_says_what_was_dropped() -> None:
    text = "".join(f"line {i}\n" for i in range(10_000))
    kept = log_tail(text, 2048)
    note, _, tail = kept.partition("\n")
    assert len(kept.encode()) <= 2048
    assert "bytes of log dropped" in note and "HERALD_MAX_LOG_BYTES" in note
    assert tail.endswith("line 9999\n") and text.endswith(tail)
    dropped = int(note.split()[1])
    assert dropped == len(text.encode()) - len(tail.encode())
    assert log_tail(kept, 2048) == kept  # capping again changes nothing


def test_a_cut_never_splits_a_character() -> None:
    kept = log_tail("€" * 5000, 1024)  # 3 bytes each
    assert kept.partition("\n")[2] == "€" * len(kept.partition("\n")[2])


def test_the_tail_buffer_holds_a_bounded_amount_whatever_is_written() -> None:
    buffer = TailBuffer(4096)
    tracemalloc.start()
    try:
        # 20 MB in lines of 1,000 bytes (each well under the cap, as a task's prints are)
        for i in range(20_000):
            buffer.write(f"{i:08d} " + "x" * 990 + "\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    value = buffer.getvalue()
    assert len(value.encode()) <= 4096
    assert value.endswith("00019999 " + "x" * 990 + "\n")
    note = value.partition("\n")[0]
    kept = len(value.partition("\n")[2].encode())
    assert int(note.split()[1]) == 20_000 * 1000 - kept


def test_a_dead_letter_body_keeps_its_head() -> None:
    assert body_head(b"abc", 10) == (b"abc", 3, False)
    assert body_head(b"x" * 100, 10) == (b"x" * 10, 100, True)


def test_result_sizes_are_json_bytes() -> None:
    assert json_size("é") == 4  # two quotes and two bytes
    assert size_problem({"a": "x" * 10}, 100) is None
    problem = size_problem("x" * 200, 100, "the return value of task 't'")
    assert problem is not None
    assert "202 bytes" in problem and "HERALD_MAX_RESULT_BYTES" in problem and "task 't'" in problem


def _dag() -> DAG:
    @dag(dag_id="sizes", schedule=None)
    def sizes() -> None:
        @task
        def loud() -> str:
            for i in range(50_000):
                print(f"{i} " + "z" * 60)
            return "ok"

        @task
        def large() -> str:
            return "x" * 3000

        @task
        def pushes(**context: Any) -> None:
            context["ti"].xcom_push("blob", "p" * 3000)

        loud()
        large()
        pushes()

    return sizes()


@pytest.mark.parametrize(
    ("task_id", "state", "error"),
    [
        ("loud", TryState.SUCCESS, None),
        ("large", TryState.FAILED, "the return value of task 'large' is 3002 bytes as JSON, more than the 2000"),
        ("pushes", TryState.FAILED, "the XCom 'blob' pushed by task 'pushes' is 3002 bytes"),
    ],
)
def test_a_try_keeps_its_log_tail_and_fails_a_large_result(task_id: str, state: TryState, error: str | None) -> None:
    d = _dag()
    result = run_task({d.dag_id: d}, request(d, task_id), SizeLimits(log=2048, result=2000))

    assert result["state"] == state
    assert len(result["log"].encode()) <= 2048
    if error is None:
        assert result["result"] == "ok"
        assert "bytes of log dropped" in result["log"] and result["log"].endswith("49999 " + "z" * 60 + "\n")
    else:
        assert error in result["error"]


def test_the_scheduler_caps_a_result_from_any_runner() -> None:
    log = "q" * 10_000
    capped = TaskResult(1, TryState.SUCCESS, result="r" * 500, log=log).capped(SizeLimits(log=1024, result=100))
    assert capped.state is TryState.FAILED and "HERALD_MAX_RESULT_BYTES" in (capped.error or "")
    assert capped.result is None and len(capped.log.encode()) <= 1024
    fine = TaskResult(1, TryState.SUCCESS, result="r", xcom={"k": 1}, log="hi").capped(SizeLimits())
    assert fine.state is TryState.SUCCESS and fine.result == "r" and fine.log == "hi"
    pushed = TaskResult(1, TryState.SUCCESS, xcom={"k": "v" * 500}).capped(SizeLimits(result=100))
    assert pushed.state is TryState.FAILED and "'k'" in (pushed.error or "")


def test_a_deferral_whose_resume_kwargs_are_too_large_fails_instead_of_waiting() -> None:
    from datetime import timedelta

    from herald import DAG as AirflowDAG
    from herald import BaseOperator, TimeDeltaTrigger

    class Nap(BaseOperator):
        def __init__(self, note: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.note = note

        def execute(self, context: Any) -> None:
            self.defer(trigger=TimeDeltaTrigger(timedelta(hours=1)), method_name="done", kwargs={"note": self.note})

    with AirflowDAG(dag_id="naps", schedule=None) as d:
        Nap(task_id="small", note="n")
        Nap(task_id="huge", note="n" * 3000)
    limits = SizeLimits(result=2000)
    small = run_task({d.dag_id: d}, request(d, "small"), limits)
    assert small["state"] == TryState.DEFERRED and small["defer"]["kwargs"] == {"note": "n"}
    huge = run_task({d.dag_id: d}, request(d, "huge"), limits)
    assert huge["state"] == TryState.FAILED and "defer" not in huge
    assert "the kwargs task 'huge' resumes with is 3011 bytes as JSON" in huge["error"]
