"""Deferred tries: storing what they wait for, matching new events against them, deadlines.

Each scheduler pass ends the waits whose event has come or whose deadline has
passed, as results (`TaskResult`) that the try state machine applies in the
same transaction: a matched try succeeds with its event as its return value;
a timed-out one fails (its retries apply) or, with `soft_fail`, is skipped; a
time wait succeeds at its time. A trigger wait ends when a triggerer has stored
how its trigger ended (`store.trigger_waits.fire`): its event resumes the try,
its failure or its timeout fails it in a worker (`next_method="__fail__"`, as
Airflow does, so the try's callbacks run), a `TaskSuccessEvent` (...) ends it.
Nothing is held in memory but compiled expressions: a restarted scheduler goes
on from the database.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from herald.executors.records import TaskResult
from herald.sdk.airflow_triggers import TRIGGER_FAILURE, TRIGGER_TIMEOUT
from herald.sdk.waits import Deferral, compile_expression, equality_of, lookup_key, payload_of, value_at
from herald.store import trigger_waits
from herald.store import waits as store_waits
from herald.store.states import TryState
from herald.store.waits import NewWait

__all__ = ["WaitOutcome", "matches", "new_wait", "resolve"]

log = logging.getLogger("herald.scheduler")

#: events of one asset matched per pass; more wait for the next pass
EVENT_SCAN = 1000
#: deadlines ended per pass
DEADLINE_SCAN = 2000
#: fired triggers ended per pass
FIRED_SCAN = 2000


@functools.lru_cache(maxsize=4096)
def _compiled(expression: str) -> Any:
    return compile_expression(expression, "match")


def matches(expression: str | None, extra: dict[str, Any] | None) -> bool:
    """True when `expression` holds on the payload of an event whose extra is `extra` (None: any event).

    A JMESPath value counts as JMESPath counts truth: false, null and empty
    strings, lists and objects do not hold; an expression that cannot be
    evaluated on this payload does not hold either.
    """
    if expression is None:
        return True
    try:
        value = _compiled(expression).search(payload_of(extra))
    except Exception:  # a payload of another shape (a type error in a comparison): not a match
        return False
    return value not in (None, False, "", [], {})


def new_wait(ti_id: int, wire: dict[str, Any], now: datetime) -> NewWait:
    """What to store for a try that deferred with this `Deferral.to_wire` (ValueError when it is not valid)."""
    deferral = Deferral.from_wire(wire)
    if deferral.trigger is not None:
        deadline = now + timedelta(seconds=deferral.timeout) if deferral.timeout is not None else None
        reason = (
            f"{TRIGGER_TIMEOUT}: {deferral.describe()} did not fire within {deferral.timeout:g}s"
            if deferral.timeout is not None
            else None
        )
        return NewWait(
            ti_id, None, None, deadline, reason, trigger=deferral.trigger, trigger_kwargs=deferral.trigger_kwargs
        )
    if deferral.asset is None:
        if deferral.timeout is not None and deferral.until is not None:
            given_up = now + timedelta(seconds=deferral.timeout)
            if given_up < deferral.until:
                # the operator's `timeout` passes before its time: the try fails then (retries apply)
                given_up_reason = f"timed out after {deferral.timeout:g}s waiting {deferral.describe()}"
                return NewWait(ti_id, None, None, given_up, given_up_reason)
        return NewWait(ti_id, None, None, deferral.until, None)
    deadline = now + timedelta(seconds=deferral.timeout) if deferral.timeout is not None else None
    reason = (
        f"timed out after {deferral.timeout:g}s waiting for {deferral.describe()}"
        if deferral.timeout is not None
        else None
    )
    indexed = equality_of(deferral.match) if deferral.match is not None else None
    path, value = (".".join(indexed[0]), lookup_key(indexed[1])) if indexed is not None else (None, None)
    return NewWait(ti_id, deferral.asset, deferral.match, deadline, reason, deferral.soft_fail, path, value)


class WaitOutcome:
    """What one matching step decided: results to apply, whether more is left, when to look again."""

    def __init__(self) -> None:
        self.results: list[TaskResult] = []
        #: when each ended time wait's time came (the event an operator resuming from it gets)
        self.moments: dict[int, datetime] = {}
        #: tries whose trigger failed or timed out: they fail in a worker, with these `__fail__` kwargs
        self.fail_in_worker: dict[int, dict[str, Any]] = {}
        #: tries a trigger's end event (`TaskSuccessEvent`, ...) ended: they do not resume
        self.ended_by_trigger: set[int] = set()
        self.more = False
        self.next_at: datetime | None = None


def _event(row: Any) -> dict[str, Any]:
    """The event a matched try returns (its XCom), in `AssetEvent.to_wire`'s shape plus `payload`."""
    extra = row.extra or {}
    return {
        "id": int(row.id),
        "asset": {"name": row.name, "uri": row.uri},
        "timestamp": row.timestamp.isoformat(),
        "extra": extra,
        "source": row.source,
        "payload": payload_of(extra),
    }


def resolve(conn: Connection, now: datetime, grace: float = 0.0) -> WaitOutcome:
    """End the waits whose event came or whose deadline passed, as results for the state machine.

    `grace` (seconds): an asset's cursor never passes an event younger than this,
    so that on PostgreSQL an event whose transaction commits after a later id's
    is still matched (ids are not visible in commit order there).
    """
    outcome = WaitOutcome()
    if not store_waits.any_waiting(conn):
        return outcome  # the common case: one cheap query per pass
    ended: set[int] = set()
    _fired_triggers(conn, now, outcome, ended)
    for asset_id in store_waits.awaited_assets(conn):
        _match_asset(conn, asset_id, now, grace, outcome, ended)
    first = store_waits.first_deadline(conn)
    for row in store_waits.due(conn, now, DEADLINE_SCAN) if first is not None and first <= now else []:
        if int(row.ti_id) in ended:
            continue
        ended.add(int(row.ti_id))
        if row.trigger_classpath is not None:
            # as Airflow's scheduler: the try fails in a worker, so its callbacks run (retries apply)
            outcome.fail_in_worker[int(row.ti_id)] = {"error": row.timeout_reason}
            result = TaskResult(int(row.ti_id), TryState.FAILED, error=row.timeout_reason, ended_at=now)
        elif row.asset_id is None and row.timeout_reason is None:
            result = TaskResult(int(row.ti_id), TryState.SUCCESS, ended_at=now, log="Time reached\n")
            outcome.moments[int(row.ti_id)] = row.deadline
        else:
            state = TryState.SKIPPED if row.soft_fail else TryState.FAILED
            result = TaskResult(int(row.ti_id), state, error=row.timeout_reason, ended_at=now)
        outcome.results.append(result)
    store_waits.end(conn, ended)
    outcome.next_at = store_waits.first_deadline(conn) if ended else first
    if outcome.results:
        log.info("%d deferred tries resumed", len(outcome.results))
    return outcome


def _fired_triggers(conn: Connection, now: datetime, outcome: WaitOutcome, ended: set[int]) -> None:
    """End the trigger waits whose trigger a triggerer saw end: results for the state machine (and resumes)."""
    if not trigger_waits.any_fired(conn):
        return
    found = trigger_waits.fired(conn, FIRED_SCAN)
    outcome.more |= len(found) == FIRED_SCAN
    for ti_id, fired, classpath in found:
        ended.add(ti_id)
        if fired.kind == "event":
            log_line = f"{fired.log}The trigger {classpath} fired\n"
            outcome.results.append(TaskResult(ti_id, TryState.SUCCESS, result=fired.event, ended_at=now, log=log_line))
        elif fired.kind == "end":
            outcome.ended_by_trigger.add(ti_id)
            outcome.results.append(_ended_by(ti_id, fired, classpath, now))
        else:
            error = fired.error or f"{TRIGGER_FAILURE}: {classpath}"
            outcome.fail_in_worker[ti_id] = {"error": error, "traceback": fired.traceback}
            outcome.results.append(TaskResult(ti_id, TryState.FAILED, error=error, ended_at=now, log=fired.log))


def _ended_by(ti_id: int, fired: Any, classpath: str, now: datetime) -> TaskResult:
    """The result of a try its trigger ended (`TaskSuccessEvent`, `TaskFailedEvent`, `TaskSkippedEvent`)."""
    log_line = f"{fired.log}The trigger {classpath} ended the task as {fired.state}\n"
    if fired.state == TryState.SUCCESS:
        return TaskResult(
            ti_id,
            TryState.SUCCESS,
            result=fired.xcoms.get("return_value"),
            xcom=fired.xcoms,
            ended_at=now,
            log=log_line,
        )
    if fired.state == TryState.SKIPPED:
        return TaskResult(ti_id, TryState.SKIPPED, xcom=fired.xcoms, ended_at=now, log=log_line)
    # as Airflow sets the state: a trigger that ends its task as failed is not retried
    error = f"the trigger {classpath} ended the task as {fired.state} (TaskFailedEvent)"
    return TaskResult(ti_id, TryState.FAILED, error=error, retry=False, ended_at=now, log=log_line)


def _match_asset(
    conn: Connection, asset_id: int, now: datetime, grace: float, outcome: WaitOutcome, ended: set[int]
) -> None:
    """Match the new waits of one asset against its events so far, then every new event against its waits."""
    through = store_waits.cursor(conn, asset_id)
    if through is None:
        return  # another scheduler is matching this asset's events now

    def resume(wait: Any, event: Any) -> None:
        ended.add(int(wait.ti_id))
        log_line = f"Resumed by event {event.id} of asset {event.name!r}\n"
        outcome.results.append(
            TaskResult(int(wait.ti_id), TryState.SUCCESS, result=_event(event), ended_at=now, log=log_line)
        )

    newcomers = store_waits.new_waits(conn, asset_id)
    if newcomers:
        low = min(int(x.since_event_id) for x in newcomers)
        past = store_waits.events_after(conn, asset_id, low, store_waits.LOOK_BACK + EVENT_SCAN, upto=through)
        for wait in newcomers:
            found = _first(wait, past)
            if found is not None:
                resume(wait, found)
        store_waits.caught_up(conn, [int(x.ti_id) for x in newcomers if int(x.ti_id) not in ended])
    events = store_waits.events_after(conn, asset_id, through, EVENT_SCAN)
    if not events:
        return
    outcome.more |= len(events) == EVENT_SCAN
    payloads = [payload_of(e.extra) for e in events]
    wanted = {
        path: {lookup_key(value_at(p, tuple(path.split(".")))) for p in payloads}
        for path in store_waits.indexed_paths(conn, asset_id)
    }
    waits = store_waits.candidates(conn, asset_id, wanted)
    for wait in waits:
        if int(wait.ti_id) not in ended:
            found = _first(wait, events)
            if found is not None:
                resume(wait, found)
    last = int(events[-1].id)
    if grace > 0:
        settled = now - timedelta(seconds=grace)
        young = [int(e.id) for e in events if e.timestamp > settled]
        last = young[0] - 1 if young else last
    store_waits.move_cursor(conn, asset_id, last)


def _first(wait: Any, events: list[Any]) -> Any:
    """The first of `events` that counts for `wait` (after its run was queued) and matches it, or None."""
    since = int(wait.since_event_id)
    return next((e for e in events if int(e.id) > since and matches(wait.match, e.extra)), None)
