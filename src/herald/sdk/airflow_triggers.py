"""Triggers written for Airflow (`serialize()`, `async def run()` yielding `TriggerEvent`).

Two uses. A deferrable operator defers on one (`self.defer(trigger=MyTrigger(...),
method_name=...)`, `BaseTrigger` below): the worker keeps the trigger's
`serialize()` in the try's deferral, a triggerer rebuilds it from its classpath
and kwargs, runs it, and its first event resumes the try
(`herald.triggerer.task_triggers`). Or a watcher consumes one as its source
(`BaseEventTrigger` with `run()`), which the rest of this docstring is about.

An Airflow trigger has no acknowledgement step: what `run()` yielded is gone
from its source whether or not Herald committed it. The adapter below turns
each `TriggerEvent` into a `Message`; `ack` has nothing to acknowledge. So such
a trigger gives **at most once**: an event yielded and not yet committed when
the triggerer dies is lost. Two ways to more:

- the payload carries an identity of the event (set `dedupe_on = "field"` on the
  trigger class): a source that offers the event again after a restart (a
  directory listed again, an API polled from a saved cursor) then makes one
  event, not two: at least once from the source becomes exactly once;
- or implement Herald's contract (`open`, `receive`, `ack`): the message is
  acknowledged to its source only after its event is committed.

Each watcher says which it has (`describe()["delivery"]`, the API's and the
UI's `delivery` field).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from herald.sdk.masking import is_sensitive
from herald.sdk.triggers import Message, _module_being_loaded

if TYPE_CHECKING:
    from herald.sdk.waits import Deferral

#: what `describe()` says of an Airflow-style trigger without `dedupe_on`
AT_MOST_ONCE = (
    "at most once: an Airflow-style trigger (run() yielding TriggerEvent) has no acknowledgement, so an event "
    "yielded when the triggerer stops is lost; set dedupe_on to a payload field naming the event, or implement "
    "receive/ack, for Herald's guarantee"
)
#: ... and with `dedupe_on`
DEDUPED = (
    "at most once from run(), deduplicated on the payload's {field!r}: an event the source offers again after a "
    "restart makes no second event; implement receive/ack for Herald's acknowledged-after-commit guarantee"
)
#: events `run()` may have yielded ahead of the triggerer (back-pressure on the generator)
BUFFER = 1000


class TriggerEvent:
    """What an Airflow trigger's `run()` yields: a JSON-serialisable `payload`.

    The payload becomes the event's `extra["payload"]`, as Airflow stores it.
    """

    def __init__(self, payload: Any) -> None:
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TriggerEvent) and other.payload == self.payload

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TriggerEvent<{self.payload!r}>"


class BaseTaskEndEvent(TriggerEvent):
    """An event that ends the deferred try in `task_instance_state` instead of resuming it in a worker.

    Args:
        xcoms: values to push as the try's XComs (`return_value` becomes its result).
    """

    #: the state the try ends in: "success", "failed" or "skipped"
    task_instance_state: ClassVar[str]

    def __init__(self, *, xcoms: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if "payload" in kwargs:
            raise ValueError(f"{type(self).__name__} takes no payload: it ends the task as {self.task_instance_state}")
        super().__init__(self.task_instance_state)
        self.xcoms = xcoms


class TaskSuccessEvent(BaseTaskEndEvent):
    """Yielded by a trigger: the deferred task ends successfully, without resuming in a worker."""

    task_instance_state = "success"


class TaskFailedEvent(BaseTaskEndEvent):
    """Yielded by a trigger: the deferred task fails (without retrying), without resuming in a worker."""

    task_instance_state = "failed"


class TaskSkippedEvent(BaseTaskEndEvent):
    """Yielded by a trigger: the deferred task is skipped, without resuming in a worker."""

    task_instance_state = "skipped"


class BaseTrigger(abc.ABC):
    """A trigger a deferrable operator waits on, written as for Airflow.

    Subclass it with `serialize()` returning `(classpath, kwargs)` (the class's
    dotted path and the keyword arguments that build it again) and `async def
    run()` yielding `TriggerEvent(payload)`. The operator calls
    `self.defer(trigger=MyTrigger(...), method_name="execute_complete")`; a
    triggerer builds `MyTrigger(**kwargs)` from the classpath (a module the DAG
    files import, or the DAG file itself), runs `run()`, and its first event
    resumes the try in `execute_complete(context, event=payload, **kwargs)`.
    `cleanup()` is called when the trigger stops (its event came, its try ended,
    or the triggerer stops). An exception in `run()`, or `run()` ending without an
    event, fails the try (its retries apply); so does the deferral's `timeout`.

    The kwargs are kept in the database as JSON while the try waits (datetimes,
    dates, timedeltas and tuples are kept as such); the event's payload too.
    Several triggerers share the triggers, and one that dies has its triggers run
    again by another: `run()` may start more than once for one deferral, and only
    the first event to be stored resumes the try.
    """

    def __init__(self, **kwargs: Any) -> None:
        #: set by the triggerer before `run()`: the deferred try (dag_id, task_id, run_id, map_index, try_number)
        self.task_instance: Any = None
        #: set by the triggerer before `run()`: the id of the deferred try
        self.trigger_id: int | None = None

    @property
    def log(self) -> logging.Logger:
        """A logger named after the trigger's class (Airflow's `self.log`)."""
        return logging.getLogger(f"{type(self).__module__}.{type(self).__qualname__}")

    @abc.abstractmethod
    def serialize(self) -> tuple[str, dict[str, Any]]:
        """`(classpath, kwargs)`: what builds this trigger again in a triggerer."""

    @abc.abstractmethod
    def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait (with `await`, never blocking) and yield `TriggerEvent(payload)` when the condition is met."""

    async def cleanup(self) -> None:  # noqa: B027 - optional hook
        """Release what `run()` holds; called when the trigger stops (its exceptions are logged and ignored)."""

    def __repr__(self) -> str:
        classpath, kwargs = self.serialize()
        return f"<{describe_trigger(classpath, kwargs)}>"


#: the `next_method` of a try resumed only to fail (its trigger failed or timed out), as in Airflow
TRIGGER_FAIL = "__fail__"
#: the error of a try whose trigger did not fire within the deferral's timeout
TRIGGER_TIMEOUT = "Trigger/execution timeout"
#: the error of a try whose trigger raised, ended without an event, or could not be built
TRIGGER_FAILURE = "Trigger failure"

#: tags of the values JSON has no type for, in trigger kwargs and event payloads
_DATETIME, _DATE, _TIMEDELTA, _TUPLE = (
    "__herald_datetime__",
    "__herald_date__",
    "__herald_timedelta__",
    "__herald_tuple__",
)


def encode_value(value: Any) -> Any:
    """`value` as JSON, datetimes, dates, timedeltas and tuples kept as tagged objects (`decode_value`)."""
    if isinstance(value, datetime):
        return {_DATETIME: value.isoformat()}
    if isinstance(value, date):
        return {_DATE: value.isoformat()}
    if isinstance(value, timedelta):
        return {_TIMEDELTA: value.total_seconds()}
    if isinstance(value, tuple):
        return {_TUPLE: [encode_value(v) for v in value]}
    if isinstance(value, list):
        return [encode_value(v) for v in value]
    if isinstance(value, dict):
        return {k: encode_value(v) for k, v in value.items()}
    return value


def decode_value(value: Any) -> Any:
    """The value `encode_value` kept: a datetime (pendulum's, when aware), date, timedelta or tuple again."""
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        [(key, inner)] = value.items()
        if key == _DATETIME and isinstance(inner, str):
            moment = datetime.fromisoformat(inner)
            if moment.tzinfo is None:
                return moment
            import pendulum

            return pendulum.instance(moment)
        if key == _DATE and isinstance(inner, str):
            return date.fromisoformat(inner)
        if key == _TIMEDELTA and isinstance(inner, int | float):
            return timedelta(seconds=inner)
        if key == _TUPLE and isinstance(inner, list):
            return tuple(decode_value(v) for v in inner)
    return {k: decode_value(v) for k, v in value.items()}


def describe_trigger(classpath: str, kwargs: Mapping[str, Any]) -> str:
    """A trigger in words, secrets masked: `module.Class(path='/in', poll=5.0)` (kwargs raw or encoded)."""
    shown = _masked(json.loads(json.dumps(decode_value(dict(kwargs)), default=str)))
    return f"{classpath}({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def resolve_trigger_class(classpath: str) -> type:
    """The class `classpath` ("module.Class") names: from a module already loaded (a DAG file counts,
    under its own module name or its file's stem), else imported; raises ImportError saying why."""
    import importlib

    module_name, _, name = classpath.rpartition(".")
    if not module_name or not name:
        raise ImportError(f"trigger classpath {classpath!r} is not 'module.Class'")
    module: Any = sys.modules.get(module_name) or _module_being_loaded(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise ImportError(f"trigger classpath {classpath!r}: cannot import {module_name!r}: {exc}") from exc
    found = getattr(module, name, None)
    if not isinstance(found, type):
        raise ImportError(f"trigger classpath {classpath!r}: module {module_name!r} has no class {name!r}")
    if not callable(getattr(found, "run", None)):
        raise ImportError(f"trigger classpath {classpath!r}: {name} has no run() (a trigger yields TriggerEvent)")
    return found


def _seconds(timeout: Any) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, timedelta):
        return timeout.total_seconds()
    return float(timeout)


def trigger_deferral(trigger: Any, method_name: str | None, kwargs: Mapping[str, Any] | None, timeout: Any) -> Deferral:
    """The deferral a task raises for `self.defer(trigger=..., method_name=..., kwargs=..., timeout=...)`.

    `trigger.serialize()` must give `(classpath, kwargs)` whose classpath resolves,
    here, to a trigger class (the triggerer resolves it the same way) and whose
    kwargs can be kept as JSON (`encode_value`); else `TypeError`, `ValueError` or
    `ImportError` saying which, and the task fails with it.
    """
    from herald.sdk.waits import Deferral

    name = type(trigger).__name__
    try:
        classpath, trigger_kwargs = trigger.serialize()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}.serialize() must return (classpath, kwargs): {exc}") from None
    if not isinstance(classpath, str) or not isinstance(trigger_kwargs, Mapping):
        raise TypeError(f"{name}.serialize() must return (classpath: str, kwargs: dict), got {classpath!r}")
    resolve_trigger_class(classpath)
    encoded = encode_value(dict(trigger_kwargs))
    try:
        json.dumps(encoded, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(
            f"the kwargs of trigger {classpath} are kept in the database as JSON while the task waits, "
            f"and these are not: {exc}"
        ) from None
    return Deferral(
        trigger=classpath,
        trigger_kwargs=encoded,
        timeout=_seconds(timeout),
        method=method_name,
        kwargs=dict(kwargs or {}),
    )


def _masked(value: Any) -> Any:
    """`value` with the values of secret-looking keys replaced by `***` (listings never show secrets)."""
    if isinstance(value, dict):
        return {k: "***" if is_sensitive(str(k)) else _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


class _RunEnded(RuntimeError):
    pass


class AirflowStyleTrigger:
    """The Herald side of a trigger written the Airflow way; mixed in by `BaseEventTrigger`.

    `BaseEventTrigger.__init_subclass__` gives these methods to a subclass that
    defines `run()` and no `receive()`. `run()` is consumed by one task per
    opened trigger into a bounded buffer; `receive` long-polls that buffer.
    """

    #: a payload field whose value names the event (the dedupe key), or None
    dedupe_on: str | None = None

    _pump: asyncio.Task[None] | None = None
    _buffer: asyncio.Queue[Any] | None = None
    _failure: BaseException | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:  # pragma: no cover - the user's class defines it
        raise NotImplementedError("an Airflow-style trigger defines serialize() -> (classpath, kwargs)")

    def run(self) -> AsyncIterator[Any]:  # pragma: no cover - the user's class defines it
        raise NotImplementedError("an Airflow-style trigger defines async def run() yielding TriggerEvent")

    async def open(self) -> None:
        """Start consuming `run()` into the buffer."""
        await self.close()
        self._failure = None
        buffer: asyncio.Queue[Any] = asyncio.Queue(BUFFER)
        self._buffer = buffer

        async def pump() -> None:
            try:
                async for event in self.run():
                    await buffer.put(event)
                await buffer.put(_RunEnded(f"{type(self).__name__}.run() ended"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # handed to receive(), which raises it: the triggerer backs off
                await buffer.put(exc)

        self._pump = asyncio.get_running_loop().create_task(pump())

    async def receive(self, max_messages: int) -> list[Message]:
        """The events `run()` yielded, up to `max_messages`; waits for the first one (long poll)."""
        if self._buffer is None:
            raise RuntimeError("receive() before open()")
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        items = [await self._buffer.get()]
        while len(items) < max_messages and not self._buffer.empty():
            items.append(self._buffer.get_nowait())
        messages: list[Message] = []
        for item in items:
            if isinstance(item, BaseException):
                if not messages:
                    raise item
                # the events yielded before the failure are delivered first; it is raised next time
                self._failure = item
                break
            messages.append(self._message(item))
        return messages

    def _message(self, event: Any) -> Message:
        if not isinstance(event, TriggerEvent):
            raise TypeError(f"{type(self).__name__}.run() must yield TriggerEvent(payload), got {event!r}")
        payload = event.payload
        key: str | None = None
        if self.dedupe_on is not None and isinstance(payload, dict) and payload.get(self.dedupe_on) is not None:
            key = f"{self.dedupe_on}:{payload[self.dedupe_on]}"
        try:
            body = json.dumps(payload).encode("utf-8")
        except (TypeError, ValueError):
            body = repr(payload).encode("utf-8")  # a dead letter (to_payload says why), its body kept readable
        return Message(
            body=body,
            # Without an identity each event is its own (nothing to dedupe on).
            dedupe_key=key or f"event:{uuid.uuid4().hex}",
            metadata={"trigger": self.serialize()[0]},
            handle=event,
        )

    async def ack(self, messages: list[Message]) -> None:
        """Nothing to acknowledge: an Airflow trigger's source forgot the event when `run()` yielded it."""

    async def close(self) -> None:
        """Stop consuming `run()`."""
        pump, self._pump = self._pump, None
        if pump is not None and not pump.done():
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump

    def describe(self) -> dict[str, Any]:
        """`serialize()` as JSON (classpath and kwargs), and the delivery this trigger gives."""
        classpath, kwargs = self.serialize()
        return {
            "url": f"airflow-trigger:{classpath}",
            "trigger": classpath,
            "kwargs": _masked(json.loads(json.dumps(kwargs, default=str))),
            "delivery": DEDUPED.format(field=self.dedupe_on) if self.dedupe_on else AT_MOST_ONCE,
        }

    def to_payload(self, message: Message) -> tuple[bool, Any, str | None]:
        """The event's payload is the `TriggerEvent`'s, as Airflow stores it (JSON, or a dead letter)."""
        payload = message.handle.payload if isinstance(message.handle, TriggerEvent) else json.loads(message.body)
        try:
            json.dumps(payload)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the TriggerEvent payload is not JSON-serialisable: {exc}") from None
        return True, payload, None
