"""Task tries: every write to `task_instance` and `task_result`, and the reads that go with them.

Each state write is a guarded UPDATE: `WHERE state IN sources(new)`, so a late
or repeated write can never move a try backwards, whichever process makes it.
Batches are one statement (executemany), never one round trip per try.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, bindparam, cast, delete, func, insert, null, or_, select, tuple_, update

from herald.store import tables as t
from herald.store import try_history
from herald.store.sql import ORDINAL, among, arrays, member, per_dialect, skip_locked, sqlite_values, unnested
from herald.store.states import TRY_TRANSITIONS, TryEnd, TryState, sources
from herald.store.storable import clean_text
from herald.store.types import utcnow

ti = t.task_instance
tr = t.task_result
_CHUNK = 500


def _from(new: TryState) -> list[str]:
    return sorted(s.value for s in sources(TRY_TRANSITIONS, new))


class Inserted(NamedTuple):
    """The tries `insert_tries` made that need the scheduler: ready to queue, and queued already."""

    ready: list[int]
    queued: list[int]


def insert_tries(conn: Connection, rows: list[dict[str, Any]]) -> Inserted:
    """The tries of started runs (`run_pk`, `dag_id`, `task_id`, `state`, `max_tries`, `queue`).

    Each task starts as one try with map index -1; a mapped task is expanded later (`expand`).
    A row may be inserted `queued` with `try_number` 1, as `queue` would leave it: its first
    try handed to the executor in the transaction that makes it (one row version, not two).
    Returns the ids of those inserted `scheduled` (ready to queue) and `queued`, in id order.
    """
    if not rows:
        return Inserted([], [])
    full = [{"try_number": 0, "map_index": -1, **r} for r in rows]
    if conn.dialect.name == "postgresql":
        inserted = conn.execute(_insert_tries_pg(conn), arrays(ti, full, _TRY_COLUMNS)).all()
    else:
        inserted = conn.execute(_INSERT_TRY, full).all()
    return Inserted(
        sorted(int(r.id) for r in inserted if r.state == TryState.SCHEDULED),
        sorted(int(r.id) for r in inserted if r.state == TryState.QUEUED),
    )


_TRY_COLUMNS = ("run_pk", "dag_id", "task_id", "map_index", "state", "try_number", "max_tries", "queue")
_INSERT_TRY = insert(ti).returning(ti.c.id, ti.c.state)


@per_dialect
def _insert_tries_pg(dialect: str) -> Any:
    u = unnested(ti, _TRY_COLUMNS)
    rows = select(*(u.c[k] for k in _TRY_COLUMNS)).select_from(u.source).order_by(u.c[ORDINAL])
    return insert(ti).from_select(list(_TRY_COLUMNS), rows).returning(ti.c.id, ti.c.state)


def expand(conn: Connection, ti_id: int, count: int) -> list[int]:
    """Expand the `scheduled` try of a mapped task into `count` tries, map indexes 0..count-1.

    The try itself becomes map index 0 (as Airflow turns its unmapped task instance into
    the first one); the others are inserted `scheduled`. Returns their ids in map index
    order, or [] when the try is not an unexpanded `scheduled` one (another pass did it).
    """
    row = conn.execute(
        select(ti.c.run_pk, ti.c.dag_id, ti.c.task_id, ti.c.max_tries, ti.c.queue).where(
            ti.c.id == ti_id, ti.c.state == TryState.SCHEDULED, ti.c.map_index == -1
        )
    ).first()
    if row is None or count < 1:
        return []
    # guarded again: of two schedulers expanding the same try, the second changes nothing
    taken = conn.execute(
        update(ti).where(ti.c.id == ti_id, ti.c.state == TryState.SCHEDULED, ti.c.map_index == -1).values(map_index=0)
    ).rowcount
    if not taken:
        return []
    if count > 1:
        base = {
            "run_pk": row.run_pk,
            "dag_id": row.dag_id,
            "task_id": row.task_id,
            "max_tries": row.max_tries,
            "queue": row.queue,
            "state": TryState.SCHEDULED,
            "try_number": 0,
        }
        conn.execute(insert(ti), [{**base, "map_index": i} for i in range(1, count)])
    return [
        int(i)
        for i in conn.execute(
            select(ti.c.id)
            .where(ti.c.run_pk == row.run_pk, ti.c.task_id == row.task_id, ti.c.map_index >= 0)
            .order_by(ti.c.map_index)
        ).scalars()
    ]


#: why a try that ends without running ended, by the state it ends in (its history)
_UNSTARTED_END = {
    TryState.SKIPPED: TryEnd.SKIPPED,
    TryState.UPSTREAM_FAILED: TryEnd.UPSTREAM_FAILED,
    TryState.FAILED: TryEnd.FAILED,
}


def end_unstarted(conn: Connection, new: TryState, ti_ids: list[int], error: str | None, now: datetime) -> None:
    """Tries that end without running (`skipped`, `upstream_failed`, `failed`), with the reason."""
    if not ti_ids:
        return
    guard = sorted(set(_from(new)) & {TryState.NONE.value, TryState.SCHEDULED.value})
    for i in range(0, len(ti_ids), _CHUNK):
        moved = conn.execute(
            update(ti)
            .where(among(conn, ti.c.id, ti_ids[i : i + _CHUNK]), ti.c.state.in_(guard))
            .values(state=new, ended_at=now, error=error)
            .returning(ti.c.id)
        ).scalars()
        try_history.record_decided(conn, list(moved), _UNSTARTED_END.get(new, TryEnd.FAILED))


def queue(conn: Connection, ti_ids: list[int]) -> None:
    """Hand tries to the executor: `queued`, under the next try number."""
    for i in range(0, len(ti_ids), _CHUNK):
        conn.execute(_queue(conn), {"ids": ti_ids[i : i + _CHUNK]})


@per_dialect
def _queue(dialect: str) -> Any:
    return (
        update(ti)
        .where(member(dialect, ti.c.id, "ids"), ti.c.state.in_([TryState.SCHEDULED, TryState.UP_FOR_RETRY]))
        .values(
            state=TryState.QUEUED,
            try_number=ti.c.try_number + 1,
            next_try_at=None,
            heartbeat_at=None,
            # a new try starts in `execute`, not where an earlier try deferred to
            next_method=None,
            next_kwargs=None,
        )
    )


def resume(
    conn: Connection,
    resumed: Mapping[int, dict[str, Any]],
    method: str | None = None,
    logs: Mapping[int, str] | None = None,
) -> list[int]:
    """Deferred tries whose trigger fired go back to the queue under the same try number.

    `resumed` maps each try to the keyword arguments its `next_method` gets (the
    trigger's event among them). Only a try still `deferred` with a `next_method`
    moves; with `method`, every try still `deferred` moves, to resume in that
    method (`"__fail__"`: its trigger failed). `logs` adds to a try's log what
    happened while it waited (its trigger's log lines). Returns the ids queued again.
    """
    done: list[int] = []
    for ti_id, kwargs in resumed.items():
        guard = [ti.c.id == ti_id, ti.c.state == TryState.DEFERRED]
        values: dict[str, Any] = {"state": TryState.QUEUED, "next_kwargs": kwargs, "heartbeat_at": None}
        if method is None:
            guard.append(ti.c.next_method.is_not(None))
        else:
            values["next_method"] = method
        added = (logs or {}).get(ti_id)
        if added:
            # a trigger's lines are whatever it logged: NUL is refused by PostgreSQL's text
            values["log"] = func.coalesce(ti.c.log, "") + clean_text(added)
        moved = conn.execute(update(ti).where(*guard).values(values)).rowcount
        if moved:
            done.append(ti_id)
    return done


def next_methods(conn: Connection, ti_ids: Iterable[int]) -> dict[int, tuple[str, dict[str, Any]]]:
    """The deferred tries among `ti_ids` that resume in a method: (method, its kwargs so far)."""
    ids = sorted(set(ti_ids))
    found: dict[int, tuple[str, dict[str, Any]]] = {}
    for i in range(0, len(ids), _CHUNK):
        for row in conn.execute(
            select(ti.c.id, ti.c.next_method, ti.c.next_kwargs).where(
                among(conn, ti.c.id, ids[i : i + _CHUNK]), ti.c.next_method.is_not(None)
            )
        ):
            found[int(row.id)] = (str(row.next_method), dict(row.next_kwargs or {}))
    return found


def mark_started(conn: Connection, started: Sequence[tuple[int, datetime, str]]) -> None:
    """Tries a worker took: (ti_id, started_at, hostname), one statement for the batch."""
    if started:
        conn.execute(
            update(ti)
            .where(ti.c.id == bindparam("b_id"), ti.c.state == TryState.QUEUED)
            .values(state=TryState.RUNNING, started_at=bindparam("b_started_at"), hostname=bindparam("b_hostname"))
            .execution_options(synchronize_session=False),
            [{"b_id": i, "b_started_at": at, "b_hostname": host} for i, at, host in started],
        )


def read(conn: Connection, ti_ids: Iterable[int]) -> dict[int, Any]:
    """The tries `ti_ids` (what applying their results needs), by id."""
    rows: dict[int, Any] = {}
    ids = sorted(set(ti_ids))
    for i in range(0, len(ids), _CHUNK):
        for row in conn.execute(_read(conn), {"ids": ids[i : i + _CHUNK]}):
            rows[int(row.id)] = row
    return rows


@per_dialect
def _read(dialect: str) -> Any:
    return select(
        ti.c.id,
        ti.c.run_pk,
        ti.c.dag_id,
        ti.c.task_id,
        ti.c.map_index,
        ti.c.try_number,
        ti.c.max_tries,
        ti.c.state,
        ti.c.next_method,
    ).where(member(dialect, ti.c.id, "ids"))


def logs_of(conn: Connection, ti_ids: Iterable[int]) -> dict[int, str]:
    """The logs stored so far for these tries (a deferred try's, before it resumed), by id."""
    ids = sorted(set(ti_ids))
    found: dict[int, str] = {}
    for i in range(0, len(ids), _CHUNK):
        for row in conn.execute(select(ti.c.id, ti.c.log).where(among(conn, ti.c.id, ids[i : i + _CHUNK]))):
            if row.log:
                found[int(row.id)] = str(row.log)
    return found


def write_ends(conn: Connection, changes: list[dict[str, Any]]) -> None:
    """Apply ended tries: each change has `id`, `state` and the columns to set.

    One guarded UPDATE per shape of change (executemany); the guard is the set
    of states the new state may be reached from. A change with a `reason` (a
    `TryEnd`: the try is over) is kept in the try history: on PostgreSQL in the
    UPDATE's own statement (the rows it returns), elsewhere one statement for the batch.
    """
    if conn.dialect.name == "postgresql":
        _write_ends_postgres(conn, changes)
        return
    groups: dict[tuple[TryState, tuple[str, ...]], list[dict[str, Any]]] = defaultdict(list)
    for change in changes:
        values = {k: _clean(k, v) for k, v in change.items() if k not in ("id", "state", "reason")}
        state = TryState(change["state"])
        bound = {f"b_{k}": v for k, v in values.items()}
        groups[(state, tuple(sorted(values)))].append({"b_id": change["id"], **bound})
    for (state, keys), params in groups.items():
        if conn.dialect.name == "sqlite":
            # the driver's executemany: SQLAlchemy's building of each row's parameters cost more than the UPDATE
            guard = _from(state)
            rows = sqlite_values(conn, ti, keys, ({k: p[f"b_{k}"] for k in keys} for p in params))
            conn.exec_driver_sql(
                _write_ends_sqlite(keys, len(guard)),
                [(state.value, *row, p["b_id"], *guard) for row, p in zip(rows, params, strict=True)],
            )
            continue
        conn.execute(
            update(ti)
            # OR of equalities, not IN: an expanding IN cannot be used with executemany.
            .where(ti.c.id == bindparam("b_id"), or_(*(ti.c.state == s for s in _from(state))))
            .values({"state": state.value, **{k: bindparam(f"b_{k}") for k in keys}})
            .execution_options(synchronize_session=False),
            params,
        )
    try_history.record_ends(
        conn, [(c["id"], TryState(c["state"]), TryEnd(c["reason"])) for c in changes if c.get("reason") is not None]
    )


def _write_ends_postgres(conn: Connection, changes: list[dict[str, Any]]) -> None:
    """`write_ends` on PostgreSQL: one statement per shape of change and end, history included."""
    groups: dict[tuple[TryState, tuple[str, ...], TryEnd | None], list[dict[str, Any]]] = defaultdict(list)
    for change in changes:
        values = {k: _clean(k, v) for k, v in change.items() if k not in ("id", "state", "reason")}
        reason = change.get("reason")
        key = (TryState(change["state"]), tuple(sorted(values)), TryEnd(reason) if reason is not None else None)
        groups[key].append({"id": change["id"], **values})
    for (state, keys, reason), params in groups.items():
        # one UPDATE ... FROM unnest(...) for the group: executemany runs one statement per row
        found = arrays(ti, params, ("id", *keys))
        if reason is None:
            conn.execute(_write_ends_pg(state, keys), found)
        else:
            conn.execute(_write_ends_kept_pg(state, keys), {**found, "reason": reason.value})


@functools.lru_cache(maxsize=64)
def _write_ends_sqlite(keys: tuple[str, ...], guards: int) -> str:
    """The UPDATE of one shape of change (SQLite, qmark): state, `keys`, then the id and the guard's states."""
    sets = "".join(f', "{k}" = ?' for k in keys)
    return f"UPDATE task_instance SET state = ?{sets} WHERE id = ? AND state IN ({', '.join(['?'] * guards)})"


@functools.lru_cache(maxsize=64)
def _write_ends_kept_pg(state: TryState, keys: tuple[str, ...]) -> Any:
    """`_write_ends_pg` whose rows written go to the try history in the same statement (`reason`)."""
    return try_history.keep_returned(_write_ends_pg(state, keys))


@functools.lru_cache(maxsize=64)
def _write_ends_pg(state: TryState, keys: tuple[str, ...]) -> Any:
    """The UPDATE of one shape of change (PostgreSQL): the new values come as one array per column."""
    u = unnested(ti, ("id", *keys))
    return (
        update(ti)
        .where(ti.c.id == u.c["id"], ti.c.state.in_(_from(state)))
        .values({"state": state.value, **{k: u.c[k] for k in keys}})
    )


def decide(conn: Connection, new: TryState, ti_ids: list[int], now: datetime) -> None:
    """Decide tries that have not started (`scheduled`, `skipped`, `upstream_failed`)."""
    if not ti_ids:
        return
    guard = sorted(set(_from(new)) & {TryState.NONE.value, TryState.SCHEDULED.value})
    values: dict[str, Any] = {"state": new}
    if new.finished:
        values["ended_at"] = now
    for i in range(0, len(ti_ids), _CHUNK):
        q = update(ti).where(among(conn, ti.c.id, ti_ids[i : i + _CHUNK]), ti.c.state.in_(guard)).values(values)
        if not new.finished:
            conn.execute(q)
            continue
        moved = conn.execute(q.returning(ti.c.id)).scalars()
        try_history.record_decided(conn, list(moved), _UNSTARTED_END.get(new, TryEnd.FAILED))


def of_runs(conn: Connection, run_pks: Iterable[int]) -> list[Any]:
    """Every try of these runs: id, run, DAG, task, map index and state, in map index order."""
    pks = sorted(set(run_pks))
    if not pks:
        return []
    return list(conn.execute(_of_runs(conn), {"pks": pks}).all())


@per_dialect
def _of_runs(dialect: str) -> Any:
    return (
        select(ti.c.id, ti.c.run_pk, ti.c.dag_id, ti.c.task_id, ti.c.map_index, ti.c.state)
        .where(member(dialect, ti.c.run_pk, "pks"))
        .order_by(ti.c.run_pk, ti.c.task_id, ti.c.map_index)
    )


def of_runs_detail(conn: Connection, run_pks: Iterable[int]) -> list[Any]:
    """Every try of these runs with its try number and end: run, task, map index, state (a callback's context)."""
    pks = sorted(set(run_pks))
    if not pks:
        return []
    return list(
        conn.execute(
            select(ti.c.run_pk, ti.c.task_id, ti.c.map_index, ti.c.state, ti.c.try_number, ti.c.ended_at)
            .where(ti.c.run_pk.in_(pks))
            .order_by(ti.c.run_pk, ti.c.task_id, ti.c.map_index)
        ).all()
    )


def scheduled_in(conn: Connection, run_pks: list[int]) -> list[int]:
    """The `scheduled` tries of these runs, in id order."""
    if not run_pks:
        return []
    return [int(i) for i in conn.execute(_scheduled_in(conn), {"pks": run_pks}).scalars()]


@per_dialect
def _scheduled_in(dialect: str) -> Any:
    return (
        select(ti.c.id).where(member(dialect, ti.c.run_pk, "pks"), ti.c.state == TryState.SCHEDULED).order_by(ti.c.id)
    )


def due_retries(conn: Connection, now: datetime) -> tuple[list[int], datetime | None]:
    """Tries whose retry delay is over, and `scheduled` tries (locked); when the next retry is due.

    A `scheduled` try found here was set by a user's retry, or held back by its DAG's
    max_active_tasks in an earlier pass.
    """
    due: list[int] = []
    later: datetime | None = None
    for ti_id, at in conn.execute(_DUE_RETRIES, {"now": now}):
        if ti_id is not None:
            due.append(int(ti_id))
        else:
            later = at
    return due, later


# One round trip: the due tries (locked), then one row with the next retry's time.
_DUE = (
    select(ti.c.id, cast(null(), ti.c.next_try_at.type).label("next_try_at"))
    .where(
        or_(
            and_(ti.c.state == TryState.UP_FOR_RETRY, ti.c.next_try_at <= bindparam("now")),
            ti.c.state == TryState.SCHEDULED,
        )
    )
    .with_for_update(skip_locked=True)
    .cte("due")
)
_DUE_RETRIES = select(_DUE.c.id, _DUE.c.next_try_at).union_all(
    select(null(), func.min(ti.c.next_try_at)).where(
        ti.c.state == TryState.UP_FOR_RETRY, ti.c.next_try_at > bindparam("now")
    )
)


def in_state(conn: Connection, state: TryState) -> list[int]:
    """The ids of every try in `state` (recovery after a restart)."""
    return [int(i) for i in conn.execute(select(ti.c.id).where(ti.c.state == state).order_by(ti.c.id)).scalars()]


def count_queued(conn: Connection, limit: int) -> int:
    """Queued tries, counted up to `limit` (no need to count a long backlog to the end)."""
    return int(conn.execute(_COUNT_QUEUED, {"limit": limit}).scalar_one())


_COUNT_QUEUED = select(func.count()).select_from(
    select(ti.c.id).where(ti.c.state == TryState.QUEUED).limit(bindparam("limit")).subquery()
)


def queued_rows(conn: Connection) -> list[Any]:
    """Every queued try: id, try number and worker queue (the Celery resend sweep)."""
    return list(
        conn.execute(
            select(ti.c.id, ti.c.try_number, ti.c.queue).where(ti.c.state == TryState.QUEUED).order_by(ti.c.id)
        ).all()
    )


def successes(conn: Connection, run_pks: Iterable[int]) -> list[Any]:
    """The succeeded tries of these runs: run, task, map index, return value and pushed values.

    In map index order, so that a mapped task's results read back as Airflow lists them.
    """
    pks = sorted(set(run_pks))
    if not pks:
        return []
    return list(
        conn.execute(
            select(ti.c.run_pk, ti.c.task_id, ti.c.map_index, ti.c.result, ti.c.xcom)
            .where(among(conn, ti.c.run_pk, pks), ti.c.state == TryState.SUCCESS)
            .order_by(ti.c.run_pk, ti.c.task_id, ti.c.map_index)
        ).all()
    )


def active_counts(conn: Connection, dag_ids: Iterable[str]) -> dict[str, int]:
    """Tries handed to an executor (queued or running) per DAG, across its runs (max_active_tasks).

    The DAGs' rows are locked first, so that a second scheduler counts after this one
    commits; a DAG another scheduler holds is left out (its tries wait for a later pass).
    """
    ids = sorted(set(dag_ids))
    if not ids:
        return {}
    ids = list(
        conn.execute(
            select(t.dag.c.dag_id)
            .where(t.dag.c.dag_id.in_(ids))
            .order_by(t.dag.c.dag_id)
            .with_for_update(skip_locked=True)
        ).scalars()
    )
    counts = {dag_id: 0 for dag_id in ids}
    if not ids:
        return counts
    return counts | {
        r.dag_id: int(r.n)
        for r in conn.execute(
            select(ti.c.dag_id, func.count().label("n"))
            .where(ti.c.dag_id.in_(ids), ti.c.state.in_([TryState.QUEUED, TryState.RUNNING]))
            .group_by(ti.c.dag_id)
        )
    }


def dags_of(conn: Connection, ti_ids: list[int]) -> dict[int, str]:
    """The DAG of each of these tries."""
    found: dict[int, str] = {}
    for i in range(0, len(ti_ids), _CHUNK):
        for row in conn.execute(select(ti.c.id, ti.c.dag_id).where(among(conn, ti.c.id, ti_ids[i : i + _CHUNK]))):
            found[int(row.id)] = row.dag_id
    return found


def skip_unfinished(conn: Connection, run_pks: list[int], now: datetime, error: str) -> list[int]:
    """Every unfinished try of these runs ends `skipped` (a run that timed out, as Airflow does).

    Returns the tries that were queued or running: their executor must stop them.
    """
    if not run_pks:
        return []
    handed = [
        int(i)
        for i in conn.execute(
            select(ti.c.id).where(ti.c.run_pk.in_(run_pks), ti.c.state.in_([TryState.QUEUED, TryState.RUNNING]))
        ).scalars()
    ]
    # a deferred try skipped here waits no more
    deferred = select(ti.c.id).where(ti.c.run_pk.in_(run_pks), ti.c.state == TryState.DEFERRED)
    conn.execute(delete(t.task_wait).where(t.task_wait.c.ti_id.in_(deferred)))
    moved = conn.execute(
        update(ti)
        .where(ti.c.run_pk.in_(run_pks), ti.c.state.in_(_from(TryState.SKIPPED)))
        .values(state=TryState.SKIPPED, ended_at=now, error=error, next_try_at=None)
        .returning(ti.c.id)
    ).scalars()
    # in its history, a try its run's end stopped (or never let start) was cancelled, not skipped by a rule
    try_history.record_decided(conn, list(moved), TryEnd.CANCELLED)
    return handed


def not_running(conn: Connection, ti_ids: list[int], name: str | None = None) -> list[int]:
    """Which of these tries are no longer running (on worker `name`, when given).

    Ended by a scheduler (a timed-out run, a lost worker), or requeued as lost and
    claimed by another worker since: this worker must stop them.
    """
    if not ti_ids:
        return []
    if name is None:
        still = set(conn.execute(_running(conn), {"ids": ti_ids}).scalars())
    else:
        still = set(conn.execute(_running_on(conn), {"ids": ti_ids, "name": name}).scalars())
    return [i for i in ti_ids if i not in still]


@per_dialect
def _running(dialect: str) -> Any:
    return select(ti.c.id).where(member(dialect, ti.c.id, "ids"), ti.c.state == TryState.RUNNING)


@per_dialect
def _running_on(dialect: str) -> Any:
    return select(ti.c.id).where(
        member(dialect, ti.c.id, "ids"), ti.c.state == TryState.RUNNING, ti.c.hostname == bindparam("name")
    )


# -- workers of their own (`herald worker`, Celery) -------------------------------------------


def claim_for_worker(
    conn: Connection, limit: int, queues: list[str] | None, default_queue: str, name: str
) -> list[int]:
    """Take up to `limit` queued tries (of `queues`, or of the default queue) for worker `name`.

    One statement: the oldest queued tries are locked (SKIP LOCKED: another worker's
    claim takes others) and marked running in the same UPDATE. Returns their ids in order.
    """
    params: dict[str, Any] = {"limit": limit, "now": utcnow(), "name": name}
    if queues:
        stmt = _claim_of_queues(conn)
        params["queues"] = queues
    else:
        stmt = _claim_default(conn)
        params["default"] = default_queue
    return sorted(int(i) for i in conn.execute(stmt, params).scalars())


def _claim(dialect: str, of_queues: bool) -> Any:
    mine = (
        member(dialect, ti.c.queue, "queues")
        if of_queues
        else or_(ti.c.queue.is_(None), ti.c.queue == bindparam("default"))
    )
    oldest = skip_locked(
        select(ti.c.id).where(ti.c.state == TryState.QUEUED, mine).order_by(ti.c.id).limit(bindparam("limit")),
        "oldest",
    )
    now = bindparam("now", type_=ti.c.started_at.type)
    return (
        update(ti)
        .where(ti.c.id.in_(select(oldest.c.id)), ti.c.state == TryState.QUEUED)
        .values(state=TryState.RUNNING, started_at=now, hostname=bindparam("name"), heartbeat_at=now)
        .returning(ti.c.id)
    )


_claim_of_queues = per_dialect(lambda d: _claim(d, of_queues=True))
_claim_default = per_dialect(lambda d: _claim(d, of_queues=False))


def release(conn: Connection, ti_ids: list[int], name: str) -> list[int]:
    """Give back tries worker `name` claimed but never started (it is stopping): queued again.

    Not a lost worker: nothing ran, so no requeue is counted. Returns the ids given back.
    """
    if not ti_ids:
        return []
    return [
        int(i)
        for i in conn.execute(
            update(ti)
            .where(among(conn, ti.c.id, ti_ids), ti.c.state == TryState.RUNNING, ti.c.hostname == name)
            .values(state=TryState.QUEUED, started_at=None, heartbeat_at=None, hostname=None)
            .returning(ti.c.id)
        ).scalars()
    ]


def claim_tries(conn: Connection, tries: Sequence[tuple[int, int]], name: str) -> list[int]:
    """Claim queued tries, each under its number (ti_id, try_number), for worker `name`, in one statement.

    Returns the ids claimed. A try not queued under that number (a duplicate delivery,
    a try failed and retried under a new number since) is not claimed.
    """
    if not tries:
        return []
    now = utcnow()
    return [
        int(i)
        for i in conn.execute(
            update(ti)
            .where(tuple_(ti.c.id, ti.c.try_number).in_(sorted(set(tries))), ti.c.state == TryState.QUEUED)
            .values(state=TryState.RUNNING, started_at=now, hostname=name, heartbeat_at=now)
            .returning(ti.c.id)
        ).scalars()
    ]


def heartbeat(conn: Connection, ti_ids: list[int], name: str | None = None) -> None:
    """These running tries are alive (those worker `name` holds, when given)."""
    if ti_ids:
        q = update(ti).where(among(conn, ti.c.id, ti_ids), ti.c.state == TryState.RUNNING)
        if name is not None:
            q = q.where(ti.c.hostname == name)
        conn.execute(q.values(heartbeat_at=utcnow()))


def heartbeat_tries(conn: Connection, tries: Sequence[tuple[int, int]], name: str) -> list[int]:
    """Record a sign of life of these tries (ti_id, try_number) held by worker `name`, in one statement.

    Returns the ids still `name`'s: the others were ended by a scheduler meanwhile (their
    run timed out) or failed as lost.
    """
    if not tries:
        return []
    return [
        int(i)
        for i in conn.execute(
            update(ti)
            .where(
                tuple_(ti.c.id, ti.c.try_number).in_(sorted(set(tries))),
                ti.c.state == TryState.RUNNING,
                ti.c.hostname == name,
            )
            .values(heartbeat_at=utcnow())
            .returning(ti.c.id)
        ).scalars()
    ]


def lost(conn: Connection, now: datetime, timeout: float) -> list[Any]:
    """Running tries whose worker has been silent for `timeout` seconds (locked): id, hostname."""
    return list(conn.execute(_LOST, {"before": now - timedelta(seconds=timeout)}).all())


_LOST = (
    select(ti.c.id, ti.c.hostname)
    .where(ti.c.state == TryState.RUNNING, ti.c.heartbeat_at < bindparam("before", type_=ti.c.heartbeat_at.type))
    .with_for_update(skip_locked=True)
)


# -- lost workers ------------------------------------------------------------------------------


def requeue_counts(conn: Connection, tries: Iterable[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """How many times each (ti_id, try_number) already went back to the queue because its worker was lost."""
    wanted = sorted(set(tries))
    if not wanted:
        return {}
    rq = t.task_requeue
    counts: dict[tuple[int, int], int] = {}
    for i in range(0, len(wanted), _CHUNK):
        chunk = set(wanted[i : i + _CHUNK])
        for r in conn.execute(
            select(rq.c.ti_id, rq.c.try_number, func.count().label("n"))
            .where(among(conn, rq.c.ti_id, sorted({ti_id for ti_id, _ in chunk})))
            .group_by(rq.c.ti_id, rq.c.try_number)
        ):
            key = (int(r.ti_id), int(r.try_number))
            if key in chunk:
                counts[key] = int(r.n)
    return counts


def requeue_lost(conn: Connection, lost: Sequence[tuple[int, int, str, str | None]], now: datetime) -> list[int]:
    """Tries whose worker was lost go back to the queue under the same try number.

    Each item is (ti_id, try_number, reason, hostname). Guarded: only a try still
    queued or running under that number moves, and only those get a history record
    (`task_requeue`). Returns the ids requeued.
    """
    done: list[int] = []
    guard = sorted({TryState.QUEUED.value, TryState.RUNNING.value} & set(_from(TryState.QUEUED)))
    # how each try was before it goes back to the queue (its history keeps when it started)
    before = {
        int(r.id): r
        for r in conn.execute(
            select(ti.c.id, ti.c.run_pk, ti.c.task_id, ti.c.map_index, ti.c.started_at).where(
                ti.c.id.in_(sorted({x[0] for x in lost}))
            )
        )
    }
    for ti_id, try_number, *_ in lost:
        moved = conn.execute(
            update(ti)
            .where(ti.c.id == ti_id, ti.c.try_number == try_number, ti.c.state.in_(guard))
            .values(state=TryState.QUEUED, started_at=None, heartbeat_at=None, hostname=None)
        ).rowcount
        if moved:
            done.append(ti_id)
    if done:
        by_id = {ti_id: (try_number, reason, hostname) for ti_id, try_number, reason, hostname in lost}
        conn.execute(
            insert(t.task_requeue),
            [
                {
                    "ti_id": i,
                    "try_number": by_id[i][0],
                    "reason": clean_text(by_id[i][1]),
                    "hostname": by_id[i][2],
                    "requeued_at": now,
                }
                for i in done
            ],
        )
        try_history.record_requeued(
            conn,
            [
                {
                    "run_pk": before[i].run_pk,
                    "task_id": before[i].task_id,
                    "map_index": before[i].map_index,
                    "started_at": before[i].started_at,
                    "try_number": by_id[i][0],
                    "error": by_id[i][1],
                    "hostname": by_id[i][2],
                }
                for i in done
                if i in before
            ],
            now,
        )
    return done


def requeues_of(conn: Connection, ti_ids: Iterable[int]) -> dict[int, list[Any]]:
    """The lost-worker history of these tries: try number, reason, hostname and time, oldest first."""
    ids = sorted(set(ti_ids))
    rq = t.task_requeue
    found: dict[int, list[Any]] = defaultdict(list)
    for i in range(0, len(ids), _CHUNK):
        for r in conn.execute(
            select(rq.c.ti_id, rq.c.try_number, rq.c.reason, rq.c.hostname, rq.c.requeued_at)
            .where(among(conn, rq.c.ti_id, ids[i : i + _CHUNK]))
            .order_by(rq.c.id)
        ):
            found[int(r.ti_id)].append(r)
    return dict(found)


_RESULT_COLUMNS = (
    "ti_id",
    "try_number",
    "state",
    "result",
    "error",
    "log",
    "outlet_extras",
    "outlet_alias_events",
    "started_at",
    "ended_at",
    "hostname",
    "skip",
    "xcom",
    "retry",
    "lost",
    "defer",
)


def store_results(conn: Connection, results: list[dict[str, Any]], holder: str | None = None) -> list[int]:
    """Results of a worker process, for a scheduler to apply (`TaskResult.to_wire` dicts).

    With `holder`, only the results of tries that worker still holds (running under
    its name) are kept: a try requeued as lost while its worker was silent, and
    perhaps running elsewhere since, keeps no late result. Returns the tries whose
    results were stored. One statement on PostgreSQL, whatever the batch.
    """
    if not results:
        return []
    rows = [{k: _clean(k, r.get(k)) for k in _RESULT_COLUMNS} for r in results]
    if conn.dialect.name == "postgresql":
        stmt = _store_held(conn) if holder is not None else _store_all(conn)
        params: dict[str, Any] = arrays(tr, rows, _RESULT_COLUMNS)
        if holder is not None:
            params["holder"] = holder
        return [int(i) for i in conn.execute(stmt, params).scalars()]
    if holder is not None:
        ended = set(not_running(conn, [int(r["ti_id"]) for r in rows], holder))
        rows = [r for r in rows if int(r["ti_id"]) not in ended]
    if rows:
        conn.execute(_INSERT_RESULT, rows)
    return [int(r["ti_id"]) for r in rows]


_INSERT_RESULT = insert(tr)


def _results_from(dialect: str, holder: bool) -> Any:
    u = unnested(tr, _RESULT_COLUMNS)
    rows = select(*(u.c[k] for k in _RESULT_COLUMNS)).select_from(u.source)
    if holder:
        rows = rows.join(
            ti, and_(ti.c.id == u.c["ti_id"], ti.c.state == TryState.RUNNING, ti.c.hostname == bindparam("holder"))
        )
    return insert(tr).from_select(list(_RESULT_COLUMNS), rows.order_by(u.c[ORDINAL])).returning(tr.c.ti_id)


_store_all = per_dialect(lambda d: _results_from(d, holder=False))
_store_held = per_dialect(lambda d: _results_from(d, holder=True))


def _clean(column: str, value: Any) -> Any:
    """A task's log and error as any database stores them (what a task prints is not up to Herald)."""
    if column in ("log", "error") and isinstance(value, str):
        return clean_text(value)
    return value


def claim_results(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """Take (and delete) up to `limit` stored results, so that no other scheduler applies them.

    One statement: the oldest results are locked (SKIP LOCKED: another scheduler takes
    others) and deleted, their rows returned. In the order they were stored.
    """
    rows = conn.execute(_CLAIM_RESULTS, {"limit": limit}).all()
    return [{k: getattr(r, k) for k in _RESULT_COLUMNS} for r in sorted(rows, key=lambda r: int(r.id))]


_OLDEST_RESULTS = skip_locked(select(tr.c.id).order_by(tr.c.id).limit(bindparam("limit")), "oldest")
_CLAIM_RESULTS = delete(tr).where(tr.c.id.in_(select(_OLDEST_RESULTS.c.id))).returning(tr)


# -- users' actions (API, CLI) ----------------------------------------------------------------


def clear(conn: Connection, run_pk: int, again: dict[str, int], downstream: list[str]) -> int:
    """A user's retry: the failed tries of `again` run again, their `downstream` tasks wait again.

    `again` maps each task id to the tries it is allowed from now (its retries + 1).
    The tries go back to `scheduled` (the next scheduler pass queues them); of a
    mapped task, only the failed map indexes run again. The downstream tasks go back
    to `none` (decided again by their trigger rules when the retried tries end), a
    mapped one folded back into one try (map index -1) that is expanded again from
    the new upstream values. Returns how many tries were set to run again. The caller
    puts the run back to running (`herald.store.runs.rerun`) and wakes the scheduler.
    """
    finished = [s.value for s in TryState if s.finished and s is not TryState.REMOVED]
    reset = {"next_try_at": None, "ended_at": None, "error": None, "heartbeat_at": None}
    changed = 0
    if again:
        changed = int(
            conn.execute(
                update(ti)
                .where(
                    ti.c.run_pk == run_pk,
                    ti.c.task_id == bindparam("b_task_id"),
                    ti.c.state == TryState.FAILED,
                )
                .values(state=TryState.SCHEDULED, max_tries=ti.c.try_number + bindparam("b_tries"), **reset)
                .execution_options(synchronize_session=False),
                [{"b_task_id": task_id, "b_tries": tries} for task_id, tries in again.items()],
            ).rowcount
        )
    if downstream:
        conn.execute(
            delete(ti).where(
                ti.c.run_pk == run_pk, ti.c.task_id.in_(downstream), ti.c.map_index > 0, ti.c.state.in_(finished)
            )
        )
        conn.execute(
            update(ti)
            .where(ti.c.run_pk == run_pk, ti.c.task_id.in_(downstream), ti.c.state.in_(finished))
            .values(state=TryState.NONE, map_index=-1, result=None, xcom=None, **reset)
        )
    return changed
