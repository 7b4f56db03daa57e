"""Flow control of an event-driven DAG: keys, order, skip and cancel, priority, throttle, debounce.

What a DAG declares (`DAG(key=..., max_active_runs_per_key=..., ...)`) is checked
here once, when the DAG file loads, and kept as one `FlowControl`. The scheduler
asks it for a run's key and priority from the payload of the events that made
the run; the decisions themselves are made in the scheduler's transaction.
No I/O here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from herald.sdk.assets import Asset
from herald.sdk.waits import compile_expression, payload_of

__all__ = ["ON_NEW_EVENT", "Debounce", "FlowControl", "Limit", "payload_of"]

ON_NEW_EVENT = ("queue", "skip", "cancel_running")
OnNewEvent = Literal["queue", "skip", "cancel_running"]
#: the longest key stored as it is; a longer one is stored as a digest (the column is 250 wide)
MAX_KEY_LENGTH = 200


def _seconds(value: float | timedelta, what: str, *, positive: bool = True) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (positive and value == 0):
        raise ValueError(f"{what} must be a number of seconds > 0 or a timedelta, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Limit:
    """At most `count` runs started per `period` seconds, per key (`throttle=`, `rate_limit=`)."""

    count: int
    period: float

    @classmethod
    def of(cls, value: Any, what: str) -> Limit:
        """A limit from `(count, seconds)` (or a `Limit`); raises `ValueError` naming `what`."""
        if isinstance(value, Limit):
            return value
        if not isinstance(value, tuple | list) or len(value) != 2:
            raise ValueError(f"{what} must be (runs, seconds), got {value!r}")
        count, period = value
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"{what}: the number of runs must be an integer >= 1, got {count!r}")
        return cls(count, _seconds(period, f"{what}: the period"))


@dataclass(frozen=True)
class Debounce:
    """One run after a burst of events of one key goes quiet.

    Args:
        seconds: the burst is over when no event of its key came for this long.
        max_wait: the run is released this long after the burst's first event even
            if events keep coming (None: a burst may last for ever).
        keep: "all" (the run takes every event of the burst as its triggering
            events, as an `EventBatch` does) or "last" (only the newest one).
    """

    seconds: float
    max_wait: float | None = None
    keep: Literal["all", "last"] = "all"

    def __post_init__(self) -> None:
        object.__setattr__(self, "seconds", _seconds(self.seconds, "Debounce.seconds"))
        if self.max_wait is not None:
            wait = _seconds(self.max_wait, "Debounce.max_wait")
            if wait < self.seconds:
                raise ValueError(f"Debounce.max_wait ({wait:g}s) must be at least its seconds ({self.seconds:g}s)")
            object.__setattr__(self, "max_wait", wait)
        if self.keep not in ("all", "last"):
            raise ValueError(f"Debounce.keep must be 'all' or 'last', got {self.keep!r}")


def _key_text(value: Any) -> str:
    """A key's stored form: a string as it is, another value as JSON; a long one as its digest."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    if len(text) > MAX_KEY_LENGTH:
        text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text


def _cancel_assets(value: Any, what: str) -> tuple[Asset, ...]:
    """`cancel_on=` as a tuple of assets: one asset or a list of them (not an alias nor a condition,
    whose events could not be told apart from the schedule's)."""
    if value is None:
        return ()
    found = [value] if isinstance(value, Asset) else value
    if isinstance(found, str | bytes) or not isinstance(found, Sequence) or not found:
        raise TypeError(f"{what}: cancel_on= must be an Asset or a list of Assets, got {value!r}")
    for asset in found:
        if not isinstance(asset, Asset):
            raise TypeError(f"{what}: cancel_on= must be an Asset or a list of Assets, got {asset!r}")
    return tuple(found)


def _expression(value: Any, what: str) -> Callable[[Any], Any]:
    """A function of the payload from a JMESPath string.

    A callable is refused: it would run inside the scheduler's transaction, where a
    hang or an `os._exit` in it would stop scheduling for every DAG.
    """
    if callable(value):
        raise TypeError(
            f"{what} must be a JMESPath expression (a string), not a callable: it is evaluated inside the "
            "scheduler, where user code could stop every DAG; shape the payload with the watcher's "
            "apply_function instead and name the field here"
        )
    if not isinstance(value, str) or not value:
        raise TypeError(f"{what} must be a JMESPath expression (a string)")
    search: Callable[[Any], Any] = compile_expression(value, what).search
    return search


@dataclass(frozen=True)
class FlowControl:
    """The flow rules of one DAG, validated. Built by `DAG(...)` from its arguments; see `DAG` for them."""

    key: Any = None
    max_active_runs_per_key: int | None = None
    on_new_event: OnNewEvent = "queue"
    priority: Any = None
    throttle: Limit | None = None
    rate_limit: Limit | None = None
    debounce: Debounce | None = None
    #: assets whose events cancel the queued and running runs of their key (`cancel_on=`)
    cancel_on: tuple[Asset, ...] = ()
    #: the key of a cancelling event (None: `key` itself, on the cancelling event's payload)
    cancel_key: str | None = None
    #: the compiled `key`, `priority` and `cancel_key` (JMESPath, compiled once)
    key_fn: Callable[[Any], Any] | None = field(default=None, compare=False, repr=False)
    priority_fn: Callable[[Any], Any] | None = field(default=None, compare=False, repr=False)
    cancel_key_fn: Callable[[Any], Any] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def build(
        cls,
        dag_id: str,
        *,
        key: Any = None,
        max_active_runs_per_key: int | None = None,
        on_new_event: str = "queue",
        priority: Any = None,
        throttle: Any = None,
        rate_limit: Any = None,
        debounce: Debounce | float | timedelta | None = None,
        cancel_on: Asset | Sequence[Asset] | None = None,
        cancel_key: str | None = None,
    ) -> FlowControl | None:
        """The DAG's flow rules, or None when it declares none; raises `ValueError`/`TypeError` naming the DAG."""
        what = f"DAG {dag_id!r}"
        key_fn = _expression(key, f"{what}: key=") if key is not None else None
        cancel_assets = _cancel_assets(cancel_on, what)
        if cancel_assets and key is None:
            raise ValueError(f"{what}: cancel_on= cancels the runs of the cancelling event's key: it needs key=")
        if cancel_key is not None and not cancel_assets:
            raise ValueError(f"{what}: cancel_key= is the key of a cancel_on= event: it needs cancel_on=")
        cancel_key_fn = _expression(cancel_key, f"{what}: cancel_key=") if cancel_key is not None else key_fn
        priority_fn = _expression(priority, f"{what}: priority=") if priority is not None else None
        if max_active_runs_per_key is not None and (
            isinstance(max_active_runs_per_key, bool)
            or not isinstance(max_active_runs_per_key, int)
            or max_active_runs_per_key < 1
        ):
            raise ValueError(f"{what}: max_active_runs_per_key must be an integer >= 1")
        if on_new_event not in ON_NEW_EVENT:
            raise ValueError(f"{what}: on_new_event must be one of {', '.join(ON_NEW_EVENT)}, got {on_new_event!r}")
        if on_new_event != "queue" and max_active_runs_per_key is None:
            # skipping or cancelling only means something against a limit: one run per key
            max_active_runs_per_key = 1
        if debounce is not None and not isinstance(debounce, Debounce):
            debounce = Debounce(debounce)  # type: ignore[arg-type]
        found = cls(
            key=key,
            max_active_runs_per_key=max_active_runs_per_key,
            on_new_event=on_new_event,  # type: ignore[arg-type]
            priority=priority,
            throttle=Limit.of(throttle, f"{what}: throttle=") if throttle is not None else None,
            rate_limit=Limit.of(rate_limit, f"{what}: rate_limit=") if rate_limit is not None else None,
            debounce=debounce,
            cancel_on=cancel_assets,
            cancel_key=cancel_key,
            key_fn=key_fn,
            priority_fn=priority_fn,
            cancel_key_fn=cancel_key_fn if cancel_assets else None,
        )
        return found if found != cls() else None

    @property
    def keyed(self) -> bool:
        """True when runs are grouped by a key (a DAG with key rules but no `key=` is one key)."""
        return self.key is not None or any(
            (self.max_active_runs_per_key, self.throttle, self.rate_limit, self.debounce)
        )

    def key_of(self, payload: Any) -> str | None:
        """The run key of an event with this payload (None: the DAG has no key rules).

        A string value is the key itself; any other value (a number, null, a list) its JSON
        form, so `null` (the field is missing) is a key like any other.
        """
        if not self.keyed:
            return None
        if self.key_fn is None:
            return ""
        return _key_text(self.key_fn(payload))

    def cancel_key_of(self, payload: Any) -> str | None:
        """The key whose runs a `cancel_on=` event with this payload cancels (None: no `cancel_on=`)."""
        if self.cancel_key_fn is None:
            return None
        return _key_text(self.cancel_key_fn(payload))

    def priority_of(self, payload: Any) -> float:
        """The priority of a run made by an event with this payload (0 when none or not a number)."""
        if self.priority_fn is None:
            return 0.0
        value = self.priority_fn(payload)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return 0.0
        return float(value)
