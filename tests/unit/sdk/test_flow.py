"""Flow control as a DAG declares it: arguments checked when the file loads, keys and priorities read
from payloads."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from herald import DAG, Asset, Debounce, task
from herald.sdk.flow import FlowControl, Limit, payload_of

A = Asset("a")


def _dag(**flow: Any) -> DAG:
    with DAG("d", schedule=[A], **flow) as dag:
        task(lambda: None, task_id="t")()
    return dag


def test_a_dag_without_flow_rules_has_none() -> None:
    assert _dag().flow is None


def test_keys_from_jmespath_or_a_callable_as_text() -> None:
    flow = _dag(key="device.id").flow
    assert flow is not None
    assert flow.key_of({"device": {"id": "s-1"}}) == "s-1"
    assert flow.key_of({"device": {"id": 7}}) == "7"
    assert flow.key_of({}) == "null"  # a missing key is a key of its own
    assert _dag(key="[a, b]").flow.key_of({"a": 1, "b": "x"}) == '[1, "x"]'  # type: ignore[union-attr]
    # user code never runs in the scheduler: a callable key or priority is an import error
    with pytest.raises(TypeError, match="not a callable"):
        _dag(key=lambda p: p["a"])
    with pytest.raises(TypeError, match="not a callable"):
        _dag(key="a", priority=lambda p: p["tier"])
    long = _dag(key="k").flow.key_of({"k": "x" * 500})  # type: ignore[union-attr]
    assert long is not None and long.startswith("sha256:") and len(long) < 250
    # key rules without key=: the DAG is one key
    assert _dag(max_active_runs_per_key=1).flow.key_of({"k": 1}) == ""  # type: ignore[union-attr]


def test_priority_is_a_number_or_zero() -> None:
    flow = _dag(priority="p").flow
    assert flow is not None
    assert flow.priority_of({"p": 3}) == 3.0
    assert flow.priority_of({"p": "high"}) == 0.0 and flow.priority_of({}) == 0.0
    assert flow.key_of({"p": 3}) is None  # priority alone keys nothing


def test_payload_is_the_watchers_payload_or_the_whole_extra() -> None:
    assert payload_of({"payload": {"k": 1}, "message": {}}) == {"k": 1}
    assert payload_of({"k": 1}) == {"k": 1}


def test_flow_rules_and_waits_read_one_payload_even_of_an_extra_that_is_not_an_object() -> None:
    from herald.sdk import waits

    # one function for keys, windows and waits alike
    assert payload_of is waits.payload_of
    assert payload_of(None) == {}
    # a list of pairs stays a list (made into a dict it would become {"k": "v"}), other values as they are
    assert payload_of([["k", "v"]]) == [["k", "v"]]
    assert payload_of("text") == "text" and payload_of(7) == 7
    flow = _dag(key="k").flow
    assert flow is not None
    assert flow.key_of(payload_of([["k", "v"]])) == "null"  # no field k in a list: the null key, no error
    assert flow.key_of(payload_of(None)) == "null"


def test_cancel_on_takes_assets_and_a_key() -> None:
    stop = Asset("stop")
    flow = _dag(key="order", cancel_on=stop).flow
    assert flow is not None and flow.cancel_on == (stop,)
    # the cancelling event's key is key= on its own payload, unless cancel_key= says where it is
    assert flow.cancel_key_of({"order": "o1"}) == "o1"
    other = _dag(key="order", cancel_on=[stop, Asset("void")], cancel_key="ref.order").flow
    assert other is not None and other.cancel_key_of({"ref": {"order": 7}}) == "7"
    assert _dag(key="order").flow.cancel_key_of({"order": "o1"}) is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("flow", "error"),
    [
        ({"cancel_on": Asset("stop")}, "needs key="),
        ({"key": "k", "cancel_key": "k"}, "needs cancel_on="),
        ({"key": "k", "cancel_on": "stop"}, "Asset or a list"),
        ({"key": "k", "cancel_on": []}, "Asset or a list"),
        ({"key": "k", "cancel_on": A}, "both in the schedule and in cancel_on"),
        ({"key": "k", "cancel_on": Asset("stop"), "cancel_key": lambda p: p}, "not a callable"),
    ],
)
def test_cancel_on_is_checked_when_the_file_loads(flow: dict[str, Any], error: str) -> None:
    with pytest.raises((ValueError, TypeError), match=error):
        _dag(**flow)


def test_cancel_on_assets_are_queued_for_the_dag_with_its_schedule() -> None:
    from herald.store.sync import dag_assets

    stop = Asset("stop")
    assert [a.name for a in dag_assets(_dag(key="k", cancel_on=stop))] == ["a", "stop"]


def test_skip_and_cancel_mean_one_run_per_key_unless_told() -> None:
    assert _dag(key="k", on_new_event="skip").flow.max_active_runs_per_key == 1  # type: ignore[union-attr]
    assert _dag(key="k", on_new_event="cancel_running", max_active_runs_per_key=2).flow.max_active_runs_per_key == 2  # type: ignore[union-attr]


def test_limits_and_debounce_take_numbers_and_timedeltas() -> None:
    flow = _dag(key="k", throttle=(2, timedelta(minutes=1)), rate_limit=[5, 10], debounce=timedelta(seconds=3)).flow
    assert flow is not None
    assert flow.throttle == Limit(2, 60.0) and flow.rate_limit == Limit(5, 10.0)
    assert flow.debounce == Debounce(3.0)
    with pytest.raises(ValueError, match="max_wait"):
        Debounce(10, max_wait=5)
    with pytest.raises(ValueError, match="keep"):
        Debounce(10, keep="first")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"key": "a["}, "not a valid JMESPath"),
        ({"key": 3}, "JMESPath"),
        ({"max_active_runs_per_key": 0}, "max_active_runs_per_key"),
        ({"on_new_event": "replace"}, "on_new_event"),
        ({"throttle": (0, 5)}, "throttle"),
        ({"rate_limit": (1, 0)}, "rate_limit"),
        ({"throttle": 5}, "throttle"),
        ({"debounce": -1}, "seconds"),
    ],
)
def test_wrong_arguments_fail_when_the_dag_loads(args: dict[str, Any], error: str) -> None:
    with pytest.raises((ValueError, TypeError), match=error):
        _dag(**args)


def test_flow_rules_need_an_asset_schedule_and_debounce_no_batch() -> None:
    from herald import EventBatch

    with pytest.raises(ValueError, match="schedule on assets"):
        DAG("cron", schedule="@daily", key="k")
    with pytest.raises(ValueError, match="debounce"):
        DAG("both", schedule=[A], debounce=1, batch=EventBatch(10, 1))
    assert FlowControl.build("x") is None
