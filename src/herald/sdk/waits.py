"""Deferral: what a task waits for without holding a worker, and the payload its expressions read.

A task defers by raising `TaskDeferred` (Airflow's name) with a `Deferral`: an
event of an asset whose payload matches a JMESPath expression, a time, or both
(the event, with a timeout). The worker reports the try `deferred` and is free
at once; the scheduler keeps the wait in the database and ends it in the
transaction that sees its event (or its deadline pass). The operators users
write are in `herald.airflow.waits`.

Expressions (a wait's `match`, a window's or an absence's `key`) read an event's
*payload*: `extra["payload"]` for an event made from a message, the whole
`extra` for a task's or an API's event (see `payload_of`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from herald.sdk.assets import Asset

__all__ = [
    "Deferral",
    "TaskDeferred",
    "compile_expression",
    "equality_of",
    "lookup_key",
    "payload_of",
    "value_at",
    "wait_for_asset_event",
]


def payload_of(extra: Any) -> Any:
    """What an expression on an event reads (a wait's `match`, a window's and a flow rule's `key`):
    `extra["payload"]` for an event made from a message, else the whole `extra` (an event emitted
    by a task, the API or the CLI); no extra reads as `{}`.

    An `extra` that is not an object (a list, a string, a number stored by an old API) is the
    payload as it is: made into a dict, a list of pairs would silently become an object and any
    other value would raise inside the scheduler's pass.
    """
    if extra is None:
        return {}
    if isinstance(extra, Mapping):
        return extra["payload"] if "payload" in extra else dict(extra)
    return extra


def compile_expression(expression: str, what: str) -> Any:
    """A compiled JMESPath expression; `ValueError` naming `what` when it is not valid."""
    import jmespath
    from jmespath.exceptions import JMESPathError

    if not isinstance(expression, str) or not expression.strip():
        raise ValueError(f"{what} must be a non-empty JMESPath expression, got {expression!r}")
    try:
        return jmespath.compile(expression)
    except JMESPathError as exc:
        raise ValueError(f"{what} {expression!r} is not a valid JMESPath expression: {exc}") from None


def _path(node: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The field path of a JMESPath node made of fields only (`a`, `a.b.c`), else None."""
    if node.get("type") == "field":
        return (str(node["value"]),)
    if node.get("type") == "subexpression":
        parts: tuple[str, ...] = ()
        for child in node.get("children", []):
            found = _path(child)
            if found is None:
                return None
            parts += found
        return parts
    return None


def equality_of(expression: str) -> tuple[tuple[str, ...], Any] | None:
    """The `path == literal` an expression requires (alone, or as a part of its top-level `&&`), or None.

    It lets the scheduler find the waits an event can end by an index lookup
    (`order_id == 'A17' && approved` needs `order_id` to be "A17") instead of
    evaluating every waiting expression against every event.
    """
    pending = [compile_expression(expression, "match").parsed]
    while pending:
        node = pending.pop(0)
        if node.get("type") == "and_expression":
            pending.extend(node.get("children", []))
        elif node.get("type") == "comparator" and node.get("value") == "eq":
            left, right = node["children"]
            for a, b in ((left, right), (right, left)):
                path = _path(a)
                if path is not None and b.get("type") == "literal" and isinstance(b.get("value"), str | int | float):
                    return path, b["value"]
    return None


def value_at(payload: Any, path: tuple[str, ...]) -> Any:
    """The value at a field path of a payload (None where the path does not lead)."""
    for name in path:
        if not isinstance(payload, dict):
            return None
        payload = payload.get(name)
    return payload


def lookup_key(value: Any) -> str:
    """A short, stable text for a JSON value, equal for the values JMESPath's `==` finds equal (1 and 1.0)."""
    import hashlib
    import json

    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]


@dataclass(frozen=True)
class Deferral:
    """What a deferred try waits for.

    Attributes:
        asset: the name of the asset whose event ends the wait, or None for a time
            or a trigger wait.
        match: a JMESPath expression on the event's payload; the first event (after
            the run was queued) for which it is true ends the wait. None: any event.
        until: when a time wait ends (UTC), or None.
        timeout: seconds after which an event wait fails (or skips with
            `soft_fail`); None waits for ever.
        soft_fail: skip the task, instead of failing it, when the timeout passes.
        method: the operator's method the try resumes in when the wait ends
            (`self.defer(..., method_name=...)`), under the same try number; None
            ends the try when the wait ends (a matched event is its return value).
        kwargs: the keyword arguments `method` gets, besides `context` and `event`
            (JSON values).
        trigger: the classpath of a trigger written for Airflow (`BaseTrigger`: its
            `serialize()`'s first half) that a triggerer rebuilds and runs; its first
            event ends the wait. None for an event or a time wait.
        trigger_kwargs: the trigger's keyword arguments (`serialize()`'s second half),
            as JSON (`herald.sdk.airflow_triggers.encode_value`).
    """

    asset: str | None = None
    match: str | None = None
    until: datetime | None = None
    timeout: float | None = None
    soft_fail: bool = False
    method: str | None = None
    kwargs: Mapping[str, Any] | None = None
    trigger: str | None = None
    trigger_kwargs: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        named = [x for x in (self.asset, self.until, self.trigger) if x is not None]
        if not named:
            raise ValueError("a deferral waits for an asset's event, until a time or for a trigger; it names none")
        if len(named) > 1:
            raise ValueError("a deferral waits for an event (with a timeout), until a time or for a trigger, not two")
        if self.trigger is not None:
            _check_trigger(self.trigger, self.trigger_kwargs)
        if self.method is not None and (not isinstance(self.method, str) or not self.method.isidentifier()):
            raise ValueError(f"a deferral resumes in a method named by a string, got {self.method!r}")
        if self.kwargs is not None:
            import json

            try:
                json.dumps(dict(self.kwargs), allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"the kwargs a deferred task resumes with are kept in the database as JSON: {exc}"
                ) from None
        if self.timeout is not None and self.timeout < 0:
            raise ValueError(f"a deferral's timeout must be >= 0 seconds, got {self.timeout}")
        if self.match is not None:
            compile_expression(self.match, "match")

    def describe(self) -> str:
        """The wait in words (for logs and the timeout's reason)."""
        if self.trigger is not None:
            from herald.sdk.airflow_triggers import describe_trigger

            return f"trigger {describe_trigger(self.trigger, self.trigger_kwargs or {})}"
        if self.asset is None:
            return f"until {self.until.isoformat() if self.until else '?'}"
        matching = f" matching `{self.match}`" if self.match else ""
        return f"an event of asset {self.asset!r}{matching}"

    def to_wire(self) -> dict[str, Any]:
        """The deferral as JSON (a worker's result carries it)."""
        return {
            "asset": self.asset,
            "match": self.match,
            "until": self.until.isoformat() if self.until else None,
            "timeout": self.timeout,
            "soft_fail": self.soft_fail,
            "method": self.method,
            "kwargs": dict(self.kwargs) if self.kwargs is not None else None,
            "trigger": (
                {"classpath": self.trigger, "kwargs": dict(self.trigger_kwargs or {})}
                if self.trigger is not None
                else None
            ),
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Deferral:
        """The deferral of a `to_wire` dict."""
        until = data.get("until")
        moment = datetime.fromisoformat(until) if isinstance(until, str) else None
        if moment is not None and moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        timeout = data.get("timeout")
        trigger = data.get("trigger")
        if trigger is not None and not isinstance(trigger, Mapping):
            raise ValueError(f"a deferral's trigger is a {{classpath, kwargs}} object, got {trigger!r}")
        return cls(
            asset=data.get("asset"),
            match=data.get("match"),
            until=moment,
            timeout=None if timeout is None else float(timeout),
            soft_fail=bool(data.get("soft_fail", False)),
            method=data.get("method"),
            kwargs=data.get("kwargs"),
            trigger=None if trigger is None else trigger.get("classpath"),
            trigger_kwargs=None if trigger is None else trigger.get("kwargs"),
        )


def _check_trigger(classpath: Any, kwargs: Any) -> None:
    """A trigger deferral names its class by a dotted path and keeps its kwargs as a JSON object."""
    import json

    module, dot, name = classpath.rpartition(".") if isinstance(classpath, str) else ("", "", "")
    if not dot or not module or not name:
        raise ValueError(f"a trigger's classpath is 'module.Class', got {classpath!r}")
    if kwargs is not None:
        if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
            raise ValueError(f"a trigger's kwargs are an object with string keys, got {kwargs!r}")
        try:
            json.dumps(dict(kwargs), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the kwargs of trigger {classpath} are kept in the database as JSON: {exc}") from None


class TaskDeferred(BaseException):
    """Raised by a task to give up its worker until what it waits for happens.

    A `BaseException`, as Airflow's, so that a task's `except Exception` does not
    swallow the deferral. Raised with a `Deferral`, or as Airflow's operators raise
    it (what `BaseOperator.defer` does): `TaskDeferred(trigger=..., method_name=...,
    kwargs=..., timeout=...)`: a time trigger (`DateTimeTrigger`, `TimeDeltaTrigger`),
    which the scheduler keeps, or a trigger written for Airflow (`BaseTrigger`:
    `serialize()` and `async def run()`), which a triggerer rebuilds and runs
    (`herald.sdk.airflow_triggers.trigger_deferral`).
    """

    def __init__(
        self,
        deferral: Deferral | None = None,
        *,
        trigger: Any = None,
        method_name: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
        timeout: Any = None,
    ) -> None:
        if deferral is None:
            to_deferral = getattr(trigger, "to_deferral", None)
            if to_deferral is not None:
                deferral = to_deferral(method_name, kwargs, timeout)
            elif callable(getattr(trigger, "serialize", None)) and callable(getattr(trigger, "run", None)):
                from herald.sdk.airflow_triggers import trigger_deferral

                deferral = trigger_deferral(trigger, method_name, kwargs, timeout)
            else:
                raise TypeError(
                    f"Herald cannot wait on trigger {type(trigger).__name__}: it waits, without a worker, for a "
                    f"time (DateTimeTrigger, TimeDeltaTrigger), for an asset's event (WaitForAssetEvent, "
                    f"wait_for_asset_event), or for a trigger written for Airflow (a BaseTrigger with "
                    f"serialize() and async def run() yielding TriggerEvent), which a triggerer runs"
                )
        super().__init__(deferral.describe())
        self.deferral = deferral


def wait_for_asset_event(
    asset: Asset | str, match: str | None = None, *, timeout: float | None = 7 * 24 * 3600.0, soft_fail: bool = False
) -> NoReturn:
    """Inside a TaskFlow task: give up the worker until an event of `asset` whose payload matches `match`.

    The task ends with that event as its return value (as `WaitForAssetEvent`);
    build `match` from the task's arguments, for example
    `wait_for_asset_event(approvals, f"order_id == '{order['id']}'", timeout=3600)`.
    The task's code after the call never runs.
    """
    name = asset if isinstance(asset, str) else asset.name
    raise TaskDeferred(Deferral(asset=name, match=match, timeout=timeout, soft_fail=soft_fail))
