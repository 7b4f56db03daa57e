"""The API's writes, each one transaction on the caller's connection; the caller wakes the scheduler.

They change the database the way the CLI and the scheduler do, so the scheduler
needs no API-specific code: a queued `dag_run` is started, an `up_for_retry`
task instance whose `next_try_at` is due is run, a `dag_run_event` row links a
run to the events it consumed.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, insert, select, update

from herald import notify
from herald.api.errors import Conflict, NotFound
from herald.scheduler.scheduler import consumers_from_db, trigger_run
from herald.store import tables as t
from herald.store.types import utcnow
from herald.triggerer.ingest import insert_events

#: `asset_event.source` of events posted to the webhook; the Idempotency-Key is their dedupe key
API_SOURCE = "api"


def _known(conn: Connection, column: Any, *where: Any) -> str:
    names = list(conn.execute(select(column).where(*where).order_by(column).limit(20)).scalars())
    return ", ".join(map(str, names)) or "none"


def require_dag(conn: Connection, dag_id: str) -> None:
    """404 unless `dag_id` is an active DAG."""
    found = conn.execute(select(t.dag.c.dag_id).where(t.dag.c.dag_id == dag_id, t.dag.c.is_active)).first()
    if found is None:
        raise NotFound(f"no DAG {dag_id!r}", f"known DAGs: {_known(conn, t.dag.c.dag_id, t.dag.c.is_active)}")


def set_paused(conn: Connection, dag_id: str, paused: bool) -> None:
    """Pause or unpause a DAG (events of a paused DAG keep queueing)."""
    require_dag(conn, dag_id)
    conn.execute(update(t.dag).where(t.dag.c.dag_id == dag_id).values(is_paused=paused))


def trigger(conn: Connection, dag_id: str, conf: dict[str, Any]) -> str:
    """Queue a manual run; returns its run id."""
    require_dag(conn, dag_id)
    return trigger_run(conn, dag_id, conf)


def emit_event(conn: Connection, asset: str, extra: dict[str, Any], idempotency_key: str | None) -> tuple[int, bool]:
    """Record an event of `asset` from the webhook; returns (event id, created).

    With an Idempotency-Key, the same key again returns the first event and
    creates nothing: the key is the event's dedupe key under the unique
    (source, dedupe_key) constraint, so two concurrent requests make one event.
    """
    asset_id = conn.execute(select(t.asset.c.id).where(t.asset.c.name == asset)).scalar()
    if asset_id is None:
        raise NotFound(
            f"no asset {asset!r}",
            f"assets come from DAG files; known assets: {_known(conn, t.asset.c.name)}",
        )
    now = utcnow()
    new = insert_events(
        conn,
        [{"asset_id": asset_id, "source": API_SOURCE, "dedupe_key": idempotency_key, "extra": extra, "timestamp": now}],
        consumers_from_db(conn, int(asset_id)),
        now,
    )
    if new:
        return new[0][0], True
    ae = t.asset_event
    first = conn.execute(
        select(ae.c.id, ae.c.asset_id).where(ae.c.source == API_SOURCE, ae.c.dedupe_key == idempotency_key)
    ).one()
    if int(first.asset_id) != int(asset_id):
        raise Conflict(
            f"Idempotency-Key {idempotency_key!r} was already used for an event of another asset (event {first.id})",
            "use a new key for each distinct event",
        )
    return int(first.id), False


def replay_event(conn: Connection, event_id: int, dag_ids: list[str] | None) -> list[str]:
    """New runs that consume an old event again, one per DAG; returns their run ids."""
    ae = t.asset_event
    event = conn.execute(select(ae.c.id, ae.c.asset_id).where(ae.c.id == event_id)).first()
    if event is None:
        raise NotFound(f"no event {event_id}", "list events with GET /api/v1/events")
    if dag_ids is None:
        dag_ids = consumers_from_db(conn, int(event.asset_id))[int(event.asset_id)]
        if not dag_ids:
            raise Conflict(
                f"no DAG is scheduled on the asset of event {event_id}",
                'name the DAGs to run in the body: {"dag_ids": ["..."]}',
            )
    runs: list[str] = []
    for dag_id in dict.fromkeys(dag_ids):
        require_dag(conn, dag_id)
        run_id = trigger_run(conn, dag_id, {}, run_type="replay")
        run_pk = conn.execute(select(t.dag_run.c.id).where(t.dag_run.c.run_id == run_id)).scalar_one()
        conn.execute(insert(t.dag_run_event).values(run_pk=run_pk, event_id=event_id))
        runs.append(run_id)
    return runs


def retry(conn: Connection, run_id: str, task_id: str | None) -> tuple[str, list[str]]:
    """Run a failed run's failed tasks again (or only `task_id`) and the tasks they held back.

    Each retried task instance gets one more try; tasks marked `upstream_failed`
    because of it go back to waiting. Returns the run's new state and the retried tasks.
    """
    dr, ti = t.dag_run, t.task_instance
    run = conn.execute(select(dr.c.id, dr.c.dag_id, dr.c.state).where(dr.c.run_id == run_id)).first()
    if run is None:
        raise NotFound(f"no run {run_id!r}", "list runs with GET /api/v1/runs")
    rows = conn.execute(select(ti.c.id, ti.c.task_id, ti.c.state, ti.c.try_number).where(ti.c.run_pk == run.id)).all()
    states = {r.task_id: r.state for r in rows}
    if task_id is not None and task_id not in states:
        raise NotFound(f"run {run_id} has no task {task_id!r}", f"its tasks: {', '.join(sorted(states)) or 'none'}")
    if run.state != "failed":
        raise Conflict(f"run {run_id} is {run.state}; only a failed run can be retried")
    now = utcnow()
    if not rows:  # failed before it started (its DAG was missing): start it again
        conn.execute(update(dr).where(dr.c.id == run.id).values(state="queued", started_at=None, ended_at=None))
        return "queued", []
    failed = sorted(k for k, v in states.items() if v == "failed")
    chosen = failed if task_id is None else [task_id]
    if not chosen or states[chosen[0]] != "failed":
        raise Conflict(
            f"task {task_id!r} of run {run_id} is {states.get(task_id or '', 'not failed')}; only failed tasks retry"
            if task_id
            else f"run {run_id} has no failed task to retry",
            f"failed tasks: {', '.join(failed) or 'none'}",
        )
    held_back = _held_back(conn, run.dag_id, states, set(chosen))
    for r in rows:
        if r.task_id in chosen:
            conn.execute(
                update(ti)
                .where(ti.c.id == r.id)
                .values(state="up_for_retry", next_try_at=now, max_tries=int(r.try_number) + 1, ended_at=None)
            )
    if held_back:
        conn.execute(
            update(ti)
            .where(ti.c.run_pk == run.id, ti.c.task_id.in_(held_back), ti.c.state == "upstream_failed")
            .values(state="none", ended_at=None)
        )
    conn.execute(update(dr).where(dr.c.id == run.id).values(state="running", ended_at=None))
    return "running", chosen


def _held_back(conn: Connection, dag_id: str, states: dict[str, str], retried: set[str]) -> list[str]:
    """`upstream_failed` tasks that only failed tasks in `retried` held back."""
    tasks = conn.execute(select(t.dag.c.tasks).where(t.dag.c.dag_id == dag_id)).scalar() or []
    downstream: dict[str, set[str]] = defaultdict(set)
    for task in tasks:
        for up in task.get("upstream", []):
            downstream[up].add(task["task_id"])

    def below(roots: set[str]) -> set[str]:
        seen: set[str] = set()
        frontier = set(roots)
        while frontier:
            nxt = {d for f in frontier for d in downstream.get(f, ()) if d not in seen}
            seen |= nxt
            frontier = nxt
        return seen

    still_failed = {k for k, v in states.items() if v == "failed"} - retried
    blocked = below(still_failed)
    return sorted(k for k in below(retried) if states.get(k) == "upstream_failed" and k not in blocked)


def request_dead_letter_replay(conn: Connection, dead_letter_id: int) -> None:
    """Mark a dead letter for the triggerer to replay through its watcher's trigger."""
    d = t.dead_letter
    row = conn.execute(select(d.c.id, d.c.watcher_id, d.c.replayed_at).where(d.c.id == dead_letter_id)).first()
    if row is None:
        raise NotFound(f"no dead letter {dead_letter_id}", "list dead letters with GET /api/v1/dead-letters")
    if row.replayed_at is not None:
        raise Conflict(f"dead letter {dead_letter_id} was already replayed")
    if row.watcher_id is None:
        raise Conflict(f"dead letter {dead_letter_id} has no watcher to replay it through")
    conn.execute(update(d).where(d.c.id == dead_letter_id).values(replay_requested_at=utcnow()))
    notify.notify_in(conn, "replay")  # herald.triggerer.replay.REPLAY: PostgreSQL wakes the triggerer now
