"""DAG callback requests: one row per run end of a DAG with `on_success_callback`/`on_failure_callback`.

The scheduler inserts a request in the transaction that ends the run, so a run
that ended has its request, however the scheduler stops afterwards. A runner
claims pending requests with a guarded UPDATE (one runner per request, however
many schedulers), runs the callbacks in a child process and records the outcome.
A claim whose runner died (older than the time limit and a margin) is taken again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update

from herald.store import tables as t
from herald.store.states import CallbackState
from herald.store.storable import clean_text

cb = t.dag_callback
dr = t.dag_run


def request(conn: Connection, rows: Sequence[tuple[int, str, str, str]], now: datetime) -> None:
    """Ask for callbacks: (run pk, dag id, kind, reason) each, kind being the DAG argument's name."""
    if rows:
        conn.execute(
            insert(cb),
            [
                {
                    "run_pk": run_pk,
                    "dag_id": dag_id,
                    "kind": kind,
                    "reason": reason,
                    "state": CallbackState.PENDING,
                    "created_at": now,
                    "attempts": 0,
                }
                for run_pk, dag_id, kind, reason in rows
            ],
        )


def claim(conn: Connection, owner: str, now: datetime, limit: int, stale_after: float) -> list[Any]:
    """Claim up to `limit` pending requests (and running ones claimed over `stale_after` seconds ago).

    Each comes with its run (what the callback's context is built from). A request
    another runner claimed meanwhile is not returned.
    """
    stale = now - timedelta(seconds=stale_after)
    candidates = [
        int(i)
        for i in conn.execute(
            select(cb.c.id)
            .where(
                or_(
                    cb.c.state == CallbackState.PENDING,
                    (cb.c.state == CallbackState.RUNNING) & (cb.c.claimed_at < stale),
                )
            )
            .order_by(cb.c.id)
            .limit(limit)
        ).scalars()
    ]
    claimed: list[int] = []
    for cid in candidates:
        moved = conn.execute(
            update(cb)
            .where(
                cb.c.id == cid,
                or_(
                    cb.c.state == CallbackState.PENDING,
                    (cb.c.state == CallbackState.RUNNING) & (cb.c.claimed_at < stale),
                ),
            )
            .values(state=CallbackState.RUNNING, claimed_by=owner, claimed_at=now, attempts=cb.c.attempts + 1)
        ).rowcount
        if moved:
            claimed.append(cid)
    if not claimed:
        return []
    return list(
        conn.execute(
            select(
                cb.c.id,
                cb.c.run_pk,
                cb.c.dag_id,
                cb.c.kind,
                cb.c.reason,
                cb.c.attempts,
                dr.c.run_id,
                dr.c.run_type,
                dr.c.conf,
                dr.c.state.label("run_state"),
                dr.c.started_at,
                dr.c.ended_at,
                dr.c.logical_date,
                dr.c.data_interval_start,
                dr.c.data_interval_end,
            )
            .join(dr, dr.c.id == cb.c.run_pk)
            .where(cb.c.id.in_(claimed))
            .order_by(cb.c.id)
        ).all()
    )


def record(
    conn: Connection, callback_id: int, owner: str, state: CallbackState, log: str, error: str | None, now: datetime
) -> bool:
    """How a claimed request ended; False when the claim was lost (taken again as stale)."""
    return bool(
        conn.execute(
            update(cb)
            .where(cb.c.id == callback_id, cb.c.state == CallbackState.RUNNING, cb.c.claimed_by == owner)
            .values(
                state=state,
                ended_at=now,
                log=clean_text(log),
                error=clean_text(error) if error is not None else None,
            )
        ).rowcount
    )


def release(conn: Connection, callback_ids: Sequence[int], owner: str) -> None:
    """Give claimed requests back, not started (their child was killed before them): any runner takes them."""
    if callback_ids:
        conn.execute(
            update(cb)
            .where(cb.c.id.in_(list(callback_ids)), cb.c.state == CallbackState.RUNNING, cb.c.claimed_by == owner)
            .values(state=CallbackState.PENDING, claimed_by=None, claimed_at=None)
        )


def of_run(conn: Connection, run_pk: int) -> list[Any]:
    """The callback requests of one run, oldest first (what `herald runs show` lists)."""
    return list(
        conn.execute(
            select(
                cb.c.id,
                cb.c.kind,
                cb.c.reason,
                cb.c.state,
                cb.c.created_at,
                cb.c.ended_at,
                cb.c.attempts,
                cb.c.log,
                cb.c.error,
            )
            .where(cb.c.run_pk == run_pk)
            .order_by(cb.c.id)
        ).all()
    )
