"""Requests and results survive their wire form."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from herald.executors.records import TaskRequest, TaskResult
from herald.store.states import TryState


def test_request_round_trip_is_json_and_carries_xcom_and_map_index() -> None:
    request = TaskRequest(
        ti_id=3,
        dag_id="d",
        task_id="t",
        try_number=2,
        run={"run_id": "r", "dag_id": "d", "run_type": "manual", "conf": {}, "start_date": None},
        upstream={"a": 1},
        xcom={"a": {"return_value": 1, "k": "v"}},
        timeout=5.0,
        queue="gpu",
    )
    wire = json.loads(json.dumps(request.to_wire()))
    assert wire["map_index"] == -1 and wire["xcom"] == {"a": {"return_value": 1, "k": "v"}}
    assert TaskRequest.from_wire(wire) == request


def test_result_defaults_and_new_keys() -> None:
    at = datetime(2026, 12, 3, tzinfo=UTC)
    result = TaskResult.from_wire(
        {"ti_id": 1, "state": "skipped", "skip": ["b"], "xcom": {"k": 1}, "started_at": at.isoformat(), "extra": 0}
    )
    assert result.state is TryState.SKIPPED and result.skip == ["b"] and result.xcom == {"k": 1}
    assert result.retry is True and result.started_at == at
    assert TaskResult.from_wire(result.to_wire()) == result
    assert TaskResult.from_wire({"ti_id": 1, "state": "failed", "retry": False}).retry is False


def test_a_result_that_cannot_be_stored_becomes_a_failure_saying_why() -> None:
    for value, reason in (
        ({"v": float("nan")}, "not JSON"),
        ({"s": "\ud800"}, "lone surrogate"),
        ([[[[]]]] * 1, None),
    ):
        result = TaskResult.from_wire({"ti_id": 1, "state": "success", "result": value, "log": "a\x00b"})
        assert result.log == "a\ufffdb"
        if reason is None:
            assert result.state is TryState.SUCCESS and result.result == value
        else:
            assert result.state is TryState.FAILED and result.result is None
            assert result.error is not None and reason in result.error
    pushed = TaskResult.from_wire({"ti_id": 1, "state": "success", "xcom": {"k": float("inf")}})
    assert pushed.state is TryState.FAILED and pushed.xcom == {}
