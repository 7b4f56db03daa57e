"""Run policies: which queued events make which runs. Pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from herald.sdk.assets import BaseAsset
from herald.sdk.dag import EventBatch


@dataclass(frozen=True)
class Pending:
    """An event queued for one DAG."""

    queue_id: int
    event_id: int
    asset: str
    queued_at: datetime
    #: other keys the event makes ready: `alias:NAME` of aliases resolving to its asset, `uri:URI`
    keys: frozenset[str] = frozenset()

    def ready(self) -> set[str]:
        """The keys this event makes ready in an asset condition."""
        return {self.asset, *self.keys}


def _ready(items: list[Pending]) -> set[str]:
    return {key for p in items for key in p.ready()}


def plan_runs(
    condition: BaseAsset, batch: EventBatch | None, pending: list[Pending], now: datetime
) -> tuple[list[list[Pending]], datetime | None]:
    """Group a DAG's queued events (oldest first) into runs.

    Without a batch policy, an event whose asset alone satisfies the condition
    (`a`, `a | b`) makes a run of its own: one run per event. Events of assets
    that need others (`a & b`) wait until the condition holds, and the run then
    takes every such event queued so far, as Airflow does. With
    `EventBatch(max_events, max_wait)` runs take up to `max_events` events, and a
    smaller batch starts once its oldest event has waited `max_wait` seconds.

    Returns the runs (each a list of events) and, when events are left waiting
    on a deadline, when to look again.
    """
    if not pending:
        return [], None
    if batch is not None:
        return _plan_batches(condition, batch, pending, now)
    runs: list[list[Pending]] = []
    waiting: list[Pending] = []
    for item in pending:
        if condition.evaluate(item.ready()):
            runs.append([item])
        else:
            waiting.append(item)
    if waiting and condition.evaluate(_ready(waiting)):
        runs.append(waiting)
    return runs, None


def _plan_batches(
    condition: BaseAsset, batch: EventBatch, pending: list[Pending], now: datetime
) -> tuple[list[list[Pending]], datetime | None]:
    if not condition.evaluate(_ready(pending)):
        return [], None
    runs: list[list[Pending]] = []
    rest = list(pending)
    while len(rest) >= batch.max_events:
        runs.append(rest[: batch.max_events])
        rest = rest[batch.max_events :]
    if not rest:
        return runs, None
    deadline = rest[0].queued_at + timedelta(seconds=batch.max_wait)
    if deadline <= now and condition.evaluate(_ready(rest)):
        runs.append(rest)
        return runs, None
    return runs, deadline
