"""Flow control's reads and writes on runs: keys, holds, admission, skips and cancels.

The scheduler decides (`herald.scheduler.flow`) and this module writes, in the
scheduler's transaction, so every decision is in the database before anything
acts on it: a kill -9 at any instant leaves either the decision or nothing.

Admission of a DAG with flow rules is serialised by its `dag` row
(`lock_dags`, SKIP LOCKED: one scheduler at a time decides for one DAG, the
others pass it by), and is a query: `candidates` returns the queued runs that
their key's concurrency lets start, in start order, through the indexes on
`(dag_id, state, priority DESC, id)` and `(dag_id, run_key, state, id)`, so a DAG
with 10,000 busy keys costs a few index probes per queued run, not a scan of
its history.

A pass reads only the keys whose runs may start where they could not before
(`flow_dirty_key`): a key is marked in the transaction that ends one of its
runs (`finish`, `end_queued`, `cancel_running`) or makes a new one, and
admission takes the marks (`take_dirty`) before it reads the keys' runs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from herald.store import tables as t
from herald.store.states import RUN_TRANSITIONS, RunState

dr = t.dag_run
fd = t.flow_dirty_key
_CHUNK = 500

#: `held_by` of a debounce run still gathering its burst
DEBOUNCE = "debounce"


class RunFlow(NamedTuple):
    """The flow columns of a new run (`store.runs.create_runs(flow=...)`)."""

    key: str | None
    priority: float = 0.0
    held_by: str | None = None
    held_until: datetime | None = None


def _from(new: RunState) -> list[str]:
    return sorted(s.value for s, targets in RUN_TRANSITIONS.items() if new in targets)


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i : i + _CHUNK]


def lock_dags(conn: Connection, dag_ids: Iterable[str]) -> tuple[set[str], set[str]]:
    """Lock these DAGs' rows for flow decisions (SKIP LOCKED): returns the DAGs this transaction
    now holds, and those another transaction holds (left to it for this pass).

    A DAG without a row (not synced yet) is in neither. On SQLite (one writer) every DAG
    with a row is held.
    """
    wanted = sorted(set(dag_ids))
    if not wanted:
        return set(), set()
    d = t.dag
    held = set(
        conn.execute(
            select(d.c.dag_id).where(d.c.dag_id.in_(wanted)).order_by(d.c.dag_id).with_for_update(skip_locked=True)
        ).scalars()
    )
    if len(held) == len(wanted):
        return held, set()
    existing = set(conn.execute(select(d.c.dag_id).where(d.c.dag_id.in_(wanted))).scalars())
    return held, existing - held


def payloads(conn: Connection, event_ids: Sequence[int]) -> dict[int, Any]:
    """The `extra` of each of these events (what `key=` and `priority=` read)."""
    ae = t.asset_event
    found: dict[int, Any] = {}
    for chunk in _chunks(sorted(set(event_ids))):
        for row in conn.execute(select(ae.c.id, ae.c.extra).where(ae.c.id.in_(chunk))):
            found[int(row.id)] = row.extra
    return found


def open_bursts(conn: Connection, dag_id: str, keys: Sequence[str], now: datetime) -> dict[str, Any]:
    """The debounce run still gathering events of each key (queued, held until after `now`):
    key -> row (id, queued_at, priority)."""
    found: dict[str, Any] = {}
    for chunk in _chunks(sorted(set(keys))):
        for row in conn.execute(
            select(dr.c.id, dr.c.run_key, dr.c.queued_at, dr.c.priority).where(
                dr.c.dag_id == dag_id,
                dr.c.run_key.in_(chunk),
                dr.c.state == RunState.QUEUED,
                dr.c.held_by == DEBOUNCE,
                dr.c.held_until > now,
            )
        ):
            found[row.run_key] = row
    return found


def extend_burst(conn: Connection, run_pk: int, held_until: datetime, priority: float) -> None:
    """A new event joined a debounce run: it waits until `held_until`, at `priority`."""
    conn.execute(
        update(dr)
        .where(dr.c.id == run_pk, dr.c.state == RunState.QUEUED)
        .values(held_until=held_until, priority=priority)
    )


def unlink_events(conn: Connection, run_pk: int) -> None:
    """A debounce run keeping only its burst's last event lets go of the ones before."""
    conn.execute(delete(t.dag_run_event).where(t.dag_run_event.c.run_pk == run_pk))


def mark_dirty(conn: Connection, pairs: Iterable[tuple[str, str | None]]) -> None:
    """These keys' queued runs may start where they could not before: (dag_id, run_key); no key, no mark.

    A mark that finds the key marked already bumps `touched`, so that it holds the row's lock
    until its transaction commits: an admission taking the mark meanwhile waits for it, and
    then sees what the marking transaction changed.
    """
    rows = [{"dag_id": d, "run_key": k, "touched": 0} for d, k in sorted({(d, k) for d, k in pairs if k is not None})]
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        stmt: Any = postgresql.insert(fd)
    elif conn.dialect.name == "sqlite":
        stmt = sqlite.insert(fd)
    else:
        raise NotImplementedError(f"unsupported database {conn.dialect.name}")
    # rows in key order: two marking transactions lock them in one order (no deadlock)
    for chunk in _chunks(rows):
        conn.execute(
            stmt.on_conflict_do_update(index_elements=[fd.c.dag_id, fd.c.run_key], set_={"touched": fd.c.touched + 1}),
            list(chunk),
        )


def take_dirty(conn: Connection, dag_id: str, limit: int) -> list[str]:
    """The marked keys of `dag_id` (at most `limit`, in key order), their marks deleted.

    Called before the keys' runs are read: a transaction marking one of them meanwhile
    either committed before (its change is then seen) or waits for this one and leaves
    a new mark for the next pass. Never SKIP LOCKED: a mark being made is waited for.
    """
    marks = lock_dirty(conn, dag_id, limit)
    clear_dirty(conn, dag_id, marks)
    return list(marks)


def lock_dirty(conn: Connection, dag_id: str, limit: int) -> dict[str, int]:
    """The marked keys of `dag_id` (at most `limit`, in key order), locked, with their `touched`:
    key -> touched. `clear_dirty` deletes the marks once decided, in the same transaction.

    As `take_dirty`, but the marks stay until the admission knows which keys it decided: a
    key left undecided (the budget was spent) keeps its mark without a delete and an insert.
    """
    rows = conn.execute(
        select(fd.c.run_key, fd.c.touched)
        .where(fd.c.dag_id == dag_id)
        .order_by(fd.c.run_key)
        .limit(limit)
        .with_for_update()
    ).all()
    return {str(r.run_key): int(r.touched) for r in rows}


def clear_dirty(conn: Connection, dag_id: str, marks: dict[str, int]) -> None:
    """Delete these marks (key -> `touched` as `lock_dirty` read it), unless marked again since:
    a mark made later in the same transaction (a cancel, a skip) bumps `touched` and stays."""
    by_touched: dict[int, list[str]] = defaultdict(list)
    for key, touched in marks.items():
        by_touched[touched].append(key)
    for touched, keys in sorted(by_touched.items()):
        for chunk in _chunks(sorted(keys)):
            conn.execute(delete(fd).where(fd.c.dag_id == dag_id, fd.c.run_key.in_(chunk), fd.c.touched == touched))


def dirty_count(conn: Connection, dag_id: str) -> int:
    """How many keys of `dag_id` are marked (for tests and the benchmark)."""
    return int(conn.execute(select(func.count()).select_from(fd).where(fd.c.dag_id == dag_id)).scalar_one())


def candidates(
    conn: Connection,
    dag_id: str,
    per_key: int | None,
    now: datetime,
    limit: int,
    keys: Sequence[str] | None = None,
) -> list[Any]:
    """Queued runs of `dag_id` that may start now as far as their key's concurrency goes, in start
    order (priority, highest first, then id): id, run_id, run_key, priority, held_by.

    With `keys`, only the runs of these keys and those without a key (else every key's).

    With `per_key` a run is a candidate only while its key's running runs and its key's
    queued runs ahead of it are fewer than `per_key`: a key's runs start in order and never
    overlap beyond it. Runs held until later (debounce, throttle) are not candidates, but
    still hold back the runs of their key behind them. Runs without a key are never held by one.
    """
    q = dr.alias("q")
    query = (
        select(q.c.id, q.c.run_id, q.c.run_key, q.c.priority, q.c.held_by)
        .where(
            q.c.dag_id == dag_id,
            q.c.state == RunState.QUEUED,
            or_(q.c.held_until.is_(None), q.c.held_until <= now),
        )
        .order_by(q.c.priority.desc(), q.c.id)
        .limit(limit)
    )
    if per_key is not None:
        o = dr.alias("o")
        ahead = or_(o.c.priority > q.c.priority, and_(o.c.priority == q.c.priority, o.c.id < q.c.id))
        # the per_key-th run that is running or queued ahead of this one, if there is one
        blocking = (
            select(o.c.id)
            .where(
                o.c.dag_id == dag_id,
                o.c.run_key == q.c.run_key,
                or_(o.c.state == RunState.RUNNING, and_(o.c.state == RunState.QUEUED, ahead)),
            )
            .limit(1)
            .offset(per_key - 1)
            .correlate(q)
            .scalar_subquery()
        )
        query = query.where(or_(q.c.run_key.is_(None), blocking.is_(None)))
    if keys is None:
        return list(conn.execute(query).all())
    # the runs without a key (a keyed DAG's manual runs: few), oldest first through the key index,
    # not in priority order through the DAG's whole queue
    unkeyed = (
        select(q.c.id, q.c.run_id, q.c.run_key, q.c.priority, q.c.held_by)
        .where(
            q.c.dag_id == dag_id,
            q.c.run_key.is_(None),
            q.c.state == RunState.QUEUED,
            or_(q.c.held_until.is_(None), q.c.held_until <= now),
        )
        .order_by(q.c.id)
        .limit(limit)
    )
    found = list(conn.execute(unkeyed).all())
    for chunk in _chunks(sorted(set(keys))):
        if per_key is None:
            found += conn.execute(query.where(q.c.run_key.in_(chunk))).all()
        else:
            found += _heads(conn, dag_id, chunk, per_key, now)
    found.sort(key=lambda r: (-float(r.priority), int(r.id)))
    return found[:limit]


def _heads(conn: Connection, dag_id: str, keys: Sequence[str], per_key: int, now: datetime) -> list[Any]:
    """`candidates` for these keys with a per-key limit, by key rather than by run: each key's
    running runs are counted first (an index range per key), and only the keys with room have
    their queued runs ranked, the first `per_key` of each read. A marked key that is busy costs
    one index probe, not one per run queued behind it (10,000 keys with 10 runs queued each: a
    correlated count per queued run took seconds a pass)."""
    running = {
        str(k): int(n)
        for k, n in conn.execute(
            select(dr.c.run_key, func.count())
            .where(dr.c.dag_id == dag_id, dr.c.run_key.in_(keys), dr.c.state == RunState.RUNNING)
            .group_by(dr.c.run_key)
        )
    }
    room = {k: per_key - running.get(k, 0) for k in keys if running.get(k, 0) < per_key}
    if not room:
        return []
    # a key's queued runs in start order; held ones (debounce, throttle) keep their place
    ranked = (
        select(
            dr.c.id,
            dr.c.run_id,
            dr.c.run_key,
            dr.c.priority,
            dr.c.held_by,
            dr.c.held_until,
            func.row_number().over(partition_by=dr.c.run_key, order_by=(dr.c.priority.desc(), dr.c.id)).label("place"),
        )
        .where(dr.c.dag_id == dag_id, dr.c.run_key.in_(sorted(room)), dr.c.state == RunState.QUEUED)
        .subquery()
    )
    rows = conn.execute(select(ranked).where(ranked.c.place <= per_key)).all()
    return [r for r in rows if int(r.place) <= room[str(r.run_key)] and (r.held_until is None or r.held_until <= now)]


def running_of_keys(conn: Connection, dag_id: str, keys: Sequence[str]) -> dict[str, list[Any]]:
    """The running runs of these keys, oldest first: key -> rows (id, run_id)."""
    found: dict[str, list[Any]] = defaultdict(list)
    for chunk in _chunks(sorted(set(keys))):
        for row in conn.execute(
            select(dr.c.id, dr.c.run_id, dr.c.run_key)
            .where(dr.c.dag_id == dag_id, dr.c.run_key.in_(chunk), dr.c.state == RunState.RUNNING)
            .order_by(dr.c.id)
        ):
            found[row.run_key].append(row)
    return found


def starts_since(conn: Connection, dag_id: str, keys: Sequence[str], since: datetime) -> dict[str, list[datetime]]:
    """When runs of these keys started at or after `since`, oldest first (what throttles count)."""
    found: dict[str, list[datetime]] = defaultdict(list)
    for chunk in _chunks(sorted(set(keys))):
        for row in conn.execute(
            select(dr.c.run_key, dr.c.started_at)
            .where(dr.c.dag_id == dag_id, dr.c.run_key.in_(chunk), dr.c.started_at >= since)
            .order_by(dr.c.started_at)
        ):
            found[row.run_key].append(row.started_at)
    return found


def release(conn: Connection, dag_id: str, now: datetime, held_by: str | None) -> set[str]:
    """Debounce and throttle holds of `dag_id` that have ended: the runs are then held by
    `held_by` (what holds a queued run otherwise: "key" with a per-key limit) until they start.
    Returns the keys of the runs released."""
    ended = (dr.c.dag_id == dag_id, dr.c.state == RunState.QUEUED, dr.c.held_until <= now)
    keys = {str(k) for k in conn.execute(select(dr.c.run_key).where(*ended).distinct()).scalars() if k is not None}
    conn.execute(
        update(dr)
        .where(dr.c.dag_id == dag_id, dr.c.state == RunState.QUEUED, dr.c.held_until <= now)
        .values(held_by=held_by, held_until=None)
    )
    return keys


def next_release(conn: Connection, dag_id: str, now: datetime) -> datetime | None:
    """When the next debounce or throttle hold of a queued run of `dag_id` ends (None: no hold)."""
    found: datetime | None = conn.execute(
        select(func.min(dr.c.held_until)).where(
            dr.c.dag_id == dag_id, dr.c.state == RunState.QUEUED, dr.c.held_until > now
        )
    ).scalar()
    return found


def running_count(conn: Connection, dag_id: str) -> int:
    """Running runs of `dag_id` (its `max_active_runs`)."""
    return int(
        conn.execute(
            select(func.count()).select_from(dr).where(dr.c.dag_id == dag_id, dr.c.state == RunState.RUNNING)
        ).scalar_one()
    )


def hold(conn: Connection, holds: Sequence[tuple[int, str, datetime | None]]) -> None:
    """Queued runs stay queued, recording the rule holding them (and until when): (run_pk, held_by, until)."""
    by_value: dict[tuple[str, datetime | None], list[int]] = defaultdict(list)
    for run_pk, held_by, until in holds:
        by_value[(held_by, until)].append(run_pk)
    for (held_by, until), pks in by_value.items():
        for chunk in _chunks(pks):
            conn.execute(
                update(dr)
                .where(dr.c.id.in_(chunk), dr.c.state == RunState.QUEUED)
                .values(held_by=held_by, held_until=until)
            )


def end_queued(
    conn: Connection, state: RunState, ends: Sequence[tuple[int, str]], now: datetime, *, event_id: int | None = None
) -> list[int]:
    """Queued runs end without starting (skipped, cancelled), recording why: (run_pk, held_by), and the
    event that cancelled them (`cancel_on=`); returns those that ended. Their keys are marked: the runs
    behind them may start."""
    allowed = [s for s in _from(state) if s == RunState.QUEUED]
    by_reason: dict[str, list[int]] = defaultdict(list)
    for run_pk, held_by in ends:
        by_reason[held_by].append(run_pk)
    ended: list[int] = []
    keys: list[tuple[str, str | None]] = []
    for held_by, pks in by_reason.items():
        for chunk in _chunks(pks):
            rows = conn.execute(
                update(dr)
                .where(dr.c.id.in_(chunk), dr.c.state.in_(allowed))
                .values(state=state, held_by=held_by, held_until=None, ended_at=now, cancelled_by_event=event_id)
                .returning(dr.c.id, dr.c.dag_id, dr.c.run_key)
            ).all()
            ended += [int(r.id) for r in rows]
            keys += [(str(r.dag_id), r.run_key) for r in rows]
    mark_dirty(conn, keys)
    return ended


def cancel_running(
    conn: Connection, run_pks: Sequence[int], held_by: str, now: datetime, *, event_id: int | None = None
) -> list[int]:
    """Running runs end `cancelled`, recording by what (a rule, and the event with `cancel_on=`);
    returns those cancelled. Their keys are marked: the runs behind them may start.

    Each is locked first, SKIP LOCKED: a run another scheduler is finishing right now is
    left to it (the caller then waits for the key's next pass).
    """
    if not run_pks:
        return []
    rows = conn.execute(
        select(dr.c.id, dr.c.dag_id, dr.c.run_key)
        .where(dr.c.id.in_(sorted(run_pks)), dr.c.state == RunState.RUNNING)
        .order_by(dr.c.id)
        .with_for_update(skip_locked=True)
    ).all()
    locked = [int(r.id) for r in rows]
    if locked:
        conn.execute(
            update(dr)
            .where(dr.c.id.in_(locked), dr.c.state.in_([s for s in _from(RunState.CANCELLED) if s != RunState.QUEUED]))
            .values(state=RunState.CANCELLED, held_by=held_by, ended_at=now, cancelled_by_event=event_id)
        )
        mark_dirty(conn, [(str(r.dag_id), r.run_key) for r in rows])
    return locked


def active_of_key(conn: Connection, dag_id: str, key: str, before_event: int) -> list[Any]:
    """The queued and running runs of one key made by an event older than `before_event`
    (what a `cancel_on=` event of that key cancels): id, run_id, state."""
    dre = t.dag_run_event
    older = select(dre.c.run_pk).where(dre.c.run_pk == dr.c.id, dre.c.event_id < before_event).exists()
    return list(
        conn.execute(
            select(dr.c.id, dr.c.run_id, dr.c.state)
            .where(
                dr.c.dag_id == dag_id,
                dr.c.run_key == key,
                dr.c.state.in_([RunState.QUEUED, RunState.RUNNING]),
                older,
            )
            .order_by(dr.c.id)
        ).all()
    )


def held_counts(conn: Connection, dag_id: str | None = None) -> dict[str, int]:
    """Runs skipped, cancelled or queued, by the rule that decided it (for listings and metrics)."""
    q = select(dr.c.held_by, func.count().label("n")).where(dr.c.held_by.is_not(None))
    if dag_id is not None:
        q = q.where(dr.c.dag_id == dag_id)
    return {str(r.held_by): int(r.n) for r in conn.execute(q.group_by(dr.c.held_by))}
