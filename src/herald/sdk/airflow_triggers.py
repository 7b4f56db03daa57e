"""Triggers written for Airflow (`serialize()`, `async def run()` yielding `TriggerEvent`) as watchers' triggers.

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

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from herald.sdk.masking import is_sensitive
from herald.sdk.triggers import Message

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
