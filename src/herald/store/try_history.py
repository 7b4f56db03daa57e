"""A task's tries, each kept once it ended (`task_try`): state, why it ended, error, worker, times.

`task_instance` holds a task's current try only: a retry overwrites the error of
the try before it, a lost worker's try goes back to the queue. This module keeps
one row per try that ended, in the transaction that ended it, copied from the
`task_instance` row the guarded UPDATE just wrote (so a write the guard refused
leaves no history). Writes are batched: a statement per kind of end in a batch
of tries, never one round trip per try.

What would violate this: a try that ends in a module of `store/` without a
`record_*` call beside its UPDATE.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, String, Update, bindparam, insert, select

from herald.store import tables as t
from herald.store.sql import member, per_dialect
from herald.store.states import TryEnd, TryState
from herald.store.storable import clean_text

ti = t.task_instance
tt = t.task_try
_CHUNK = 500
_COPIED = ("run_pk", "task_id", "map_index", "try_number", "state", "error", "hostname", "started_at", "ended_at")


def record_ends(conn: Connection, ends: Sequence[tuple[int, TryState, TryEnd]]) -> None:
    """Keep the tries a batch of results ended: (ti_id, the state written, why).

    One INSERT ... SELECT per (state, why) of the batch, a handful at most: on
    PostgreSQL an executemany runs one statement per row, 20 times slower. Each
    row is copied from its try only if the try is in the state written: a result
    the guarded UPDATE turned away (the try moved on meanwhile) leaves none.
    """
    groups: dict[tuple[TryState, TryEnd], list[int]] = defaultdict(list)
    for ti_id, state, reason in ends:
        groups[(TryState(state), TryEnd(reason))].append(ti_id)
    for (state, reason), ids in groups.items():
        _copy(conn, ids, reason, state)


def _copy(conn: Connection, ti_ids: Sequence[int], reason: TryEnd, state: TryState | None = None) -> None:
    """Copy these tries (those in `state`, when given) into the history as ended for `reason`."""
    ids = sorted(set(ti_ids))
    stmt = _copy_in_state(conn) if state is not None else _copy_any(conn)
    for i in range(0, len(ids), _CHUNK):
        params = {"ids": ids[i : i + _CHUNK], "reason": TryEnd(reason).value}
        if state is not None:
            params["state"] = state.value
        conn.execute(stmt, params)


def _copying(dialect: str, in_state: bool) -> Any:
    copied = select(*(ti.c[c] for c in _COPIED), bindparam("reason", type_=String(20))).where(
        member(dialect, ti.c.id, "ids")
    )
    if in_state:
        copied = copied.where(ti.c.state == bindparam("state"))
    return insert(tt).from_select([*_COPIED, "reason"], copied)


_copy_in_state = per_dialect(lambda d: _copying(d, in_state=True))
_copy_any = per_dialect(lambda d: _copying(d, in_state=False))


def keep_returned(update: Update) -> Any:
    """`update` of task_instance (PostgreSQL) with each row it wrote kept as an ended try, one statement:
    `WITH moved AS (UPDATE ... RETURNING ...) INSERT INTO task_try SELECT ... FROM moved`.

    Only the rows the UPDATE moved are kept (a result its guard turned away leaves none);
    the statement takes the end as the parameter `reason`.
    """
    moved = update.returning(*(ti.c[c] for c in _COPIED)).cte("moved")
    return insert(tt).from_select(
        [*_COPIED, "reason"], select(*(moved.c[c] for c in _COPIED), bindparam("reason", type_=String(20)))
    )


def record_decided(conn: Connection, ti_ids: Sequence[int], reason: TryEnd) -> None:
    """Keep tries that ended without running (skipped, upstream_failed, cancelled), as just written."""
    _copy(conn, ti_ids, reason)


def record_requeued(conn: Connection, tries: Sequence[dict[str, Any]], now: datetime) -> None:
    """Keep the tries whose worker was lost, as they were before going back to the queue.

    Each: `run_pk`, `task_id`, `map_index`, `try_number`, `started_at`, `hostname`, `error`.
    """
    if tries:
        conn.execute(
            insert(tt),
            [
                {
                    **{k: x.get(k) for k in ("run_pk", "task_id", "map_index", "try_number", "started_at", "hostname")},
                    "error": clean_text(str(x["error"])) if x.get("error") is not None else None,
                    "state": TryState.QUEUED.value,
                    "reason": TryEnd.LOST_WORKER.value,
                    "ended_at": now,
                }
                for x in tries
            ],
        )


def of_run(conn: Connection, run_pk: int) -> dict[tuple[str, int], list[Any]]:
    """The ended tries of a run by (task id, map index), oldest first."""
    found: dict[tuple[str, int], list[Any]] = defaultdict(list)
    for row in conn.execute(select(tt).where(tt.c.run_pk == run_pk).order_by(tt.c.id)):
        found[(row.task_id, int(row.map_index))].append(row)
    return dict(found)
