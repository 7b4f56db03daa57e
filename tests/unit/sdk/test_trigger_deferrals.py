"""Deferring on a trigger written for Airflow: what the worker keeps of it, and what it refuses."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from herald import (
    BaseOperator,
    BaseTrigger,
    TaskDeferralError,
    TaskDeferralTimeout,
    TaskDeferred,
    TaskSuccessEvent,
    TriggerEvent,
)
from herald.executors.worker import run_task
from herald.loader import load_folder
from herald.sdk.airflow_triggers import decode_value, encode_value, resolve_trigger_class
from herald.sdk.waits import Deferral
from herald.store.states import TryState


class Poll(BaseTrigger):
    def __init__(self, url: str, every: timedelta, since: datetime, api_token: str = "t0ken", tags: Any = ()) -> None:
        super().__init__()
        self.url, self.every, self.since, self.api_token, self.tags = url, every, since, api_token, tags

    def serialize(self) -> tuple[str, dict[str, Any]]:
        kwargs = {"url": self.url, "every": self.every, "since": self.since, "api_token": self.api_token}
        return (f"{__name__}.Poll", {**kwargs, "tags": self.tags})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent({"url": self.url})


SINCE = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def _deferral(trigger: Any, **kwargs: Any) -> Deferral:
    with pytest.raises(TaskDeferred) as raised:
        raise TaskDeferred(trigger=trigger, method_name="done", **kwargs)
    return raised.value.deferral


def test_a_deferral_keeps_the_trigger_s_classpath_and_kwargs_as_json_and_travels() -> None:
    trigger = Poll("http://x/jobs/1", timedelta(seconds=5), SINCE, tags=("a", ("b", 1)))
    deferral = _deferral(trigger, kwargs={"job": 1}, timeout=timedelta(minutes=2))
    assert (deferral.trigger, deferral.method, deferral.kwargs, deferral.timeout) == (
        f"{__name__}.Poll",
        "done",
        {"job": 1},
        120.0,
    )
    assert Deferral.from_wire(deferral.to_wire()) == deferral
    kwargs = dict(deferral.trigger_kwargs or {})
    assert kwargs["every"] == {"__herald_timedelta__": 5.0}
    # rebuilt as the trigger was made: the triggerer calls cls(**decode_value(kwargs))
    rebuilt = resolve_trigger_class(deferral.trigger)(**decode_value(kwargs))
    assert (rebuilt.every, rebuilt.since, rebuilt.tags) == (timedelta(seconds=5), SINCE, ("a", ("b", 1)))
    # what listings show: secrets masked
    assert "api_token='***'" in deferral.describe() and "t0ken" not in deferral.describe()
    assert "t0ken" not in repr(trigger) and repr(trigger).startswith(f"<{__name__}.Poll(url='http://x/jobs/1'")


def test_values_json_has_no_type_for_come_back_as_they_were() -> None:
    value = {"at": SINCE, "day": date(2030, 1, 2), "naive": datetime(2030, 1, 1), "gap": timedelta(hours=1)}
    value["pair"] = (1, [2, (3,)])
    assert decode_value(encode_value(value)) == value
    assert type(decode_value(encode_value(SINCE))).__name__ == "DateTime"  # pendulum's, as Airflow gives


class Weird(Poll):
    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{__name__}.Weird", {"handle": object()})


class Elsewhere(Poll):
    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("no_such_package.triggers.Elsewhere", {})


class NotAClass(Poll):
    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{__name__}.SINCE", {})


class Garbled(Poll):
    def serialize(self) -> Any:
        return "just a string"


class Plain:
    """Neither a time trigger nor a trigger written for Airflow."""


@pytest.mark.parametrize(
    ("trigger", "error", "says"),
    [
        (Weird("u", timedelta(0), SINCE), ValueError, "kwargs of trigger tests.unit.sdk.test_trigger_deferrals.Weird"),
        (Elsewhere("u", timedelta(0), SINCE), ImportError, "cannot import 'no_such_package.triggers'"),
        (NotAClass("u", timedelta(0), SINCE), ImportError, "has no class 'SINCE'"),
        (Garbled("u", timedelta(0), SINCE), TypeError, "must return (classpath, kwargs)"),
        (Plain(), TypeError, "cannot wait on trigger Plain"),
    ],
)
def test_a_trigger_herald_cannot_keep_is_refused_saying_why(trigger: Any, error: type, says: str) -> None:
    with pytest.raises(error) as raised:
        TaskDeferred(trigger=trigger, method_name="done")
    assert says in str(raised.value)


def test_an_end_event_takes_no_payload() -> None:
    assert TaskSuccessEvent(xcoms={"a": 1}).payload == "success"
    with pytest.raises(ValueError, match="takes no payload"):
        TaskSuccessEvent(payload=1)  # type: ignore[call-arg]


DAG_FILE = """
from herald import DAG, BaseOperator, BaseTrigger, TriggerEvent

class Tick(BaseTrigger):
    def __init__(self, n):
        super().__init__()
        self.n = n

    def serialize(self):
        return ("{classpath}", {{"n": self.n}})

    async def run(self):
        yield TriggerEvent({{"n": self.n}})

class Waiter(BaseOperator):
    def execute(self, context):
        self.defer(trigger=Tick(3), method_name="done", kwargs={{"k": "v"}})

    def done(self, ctx, event=None, k=None):  # context positionally, as Airflow passes it
        return {{"event": event, "k": k, "try": ctx["ti"].try_number}}

with DAG(dag_id="ticks", schedule=None):
    Waiter(task_id="wait")
"""


def _request(**extra: Any) -> dict[str, Any]:
    run = {"run_id": "r1", "dag_id": "ticks", "run_type": "manual", "conf": {}, "start_date": None}
    return {"ti_id": 1, "dag_id": "ticks", "task_id": "wait", "try_number": 1, "run": run, **extra}


@pytest.mark.parametrize("spelling", ["stem", "module"])
def test_a_trigger_class_in_the_dag_file_is_named_by_its_file_or_its_module(tmp_path: Path, spelling: str) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    path = folder / f"ticks_{spelling}.py"
    classpath = f"ticks_{spelling}.Tick" if spelling == "stem" else "{module}.Tick"
    source = textwrap.dedent(DAG_FILE).format(classpath=classpath)
    if spelling == "module":
        source = source.replace('"{module}.Tick"', 'f"{type(self).__module__}.Tick"')
    path.write_text(source)
    bag = load_folder(folder)
    assert not bag.errors, bag.errors
    deferred = run_task(bag.dags, _request())
    assert deferred["state"] == TryState.DEFERRED, deferred
    trigger = deferred["defer"]["trigger"]
    assert trigger["kwargs"] == {"n": 3} and resolve_trigger_class(trigger["classpath"]).__name__ == "Tick"

    resumed = run_task(bag.dags, _request(next_method="done", next_kwargs={"k": "v", "event": {"n": 3}}))
    assert (resumed["state"], resumed["result"]) == (TryState.SUCCESS, {"event": {"n": 3}, "k": "v", "try": 1})


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        ("Trigger failure: m.T raised: OSError: gone", TaskDeferralError),
        ("Trigger/execution timeout", TaskDeferralTimeout),
    ],
)
def test_a_try_resumed_in_fail_fails_in_its_worker_with_retries(tmp_path: Path, error: str, raised: type) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "ticks.py").write_text(textwrap.dedent(DAG_FILE).format(classpath="ticks.Tick"))
    bag = load_folder(folder)
    kwargs = {"error": error, "traceback": ["Traceback (most recent call last):\n", "OSError: gone\n"]}
    failed = run_task(bag.dags, _request(next_method="__fail__", next_kwargs=kwargs))
    assert failed["state"] == TryState.FAILED and failed["retry"] is True
    assert failed["error"] == f"{raised.__name__}: {error}"
    assert "The trigger failed:" in failed["log"] and "OSError: gone" in failed["log"]


class Overriding(BaseOperator):
    def execute(self, context: Any) -> Any:
        raise AssertionError("not called")

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        return {"method": next_method, "kwargs": next_kwargs}


def test_resume_execution_is_the_operator_s_own_when_it_overrides_it() -> None:
    from herald import DAG

    with DAG(dag_id="ticks", schedule=None) as dag:
        Overriding(task_id="wait")
    done = run_task({"ticks": dag}, _request(next_method="__fail__", next_kwargs={"error": "x"}))
    assert done["result"] == {"method": "__fail__", "kwargs": {"error": "x"}}


def test_a_trigger_defined_here_runs_as_the_triggerer_would_run_it() -> None:
    trigger = resolve_trigger_class(f"{__name__}.Poll")(url="u", every=timedelta(0), since=SINCE)

    async def first() -> Any:
        async for event in trigger.run():
            return event.payload
        return None

    assert asyncio.run(first()) == {"url": "u"}
