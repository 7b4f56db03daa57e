"""DAG runs: the one place that inserts `dag_run` rows, starts and finishes them.

Run-state writes are guarded by the transitions of `herald.store.states`
(`WHERE state IN sources`), so two schedulers never move one run twice.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Connection, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY

from herald.store import tables as t
from herald.store.flow import RunFlow, mark_dirty
from herald.store.sql import ORDINAL, among, arrays, member, per_dialect, skip_locked, unnested
from herald.store.states import RUN_TRANSITIONS, RunState, RunType
from herald.store.types import utcnow

dr = t.dag_run
_CHUNK = 500


def _from(new: RunState) -> list[str]:
    return sorted(s.value for s, targets in RUN_TRANSITIONS.items() if new in targets)


def new_run_id(run_type: str, now: datetime) -> str:
    """A unique run id: `asset_triggered__2026-11-21T12:00:00.123456+00:00_1a2b3c4d`."""
    return f"{run_type}__{now.isoformat()}_{secrets.token_hex(4)}"


def create_runs(
    conn: Connection,
    dag_ids: Sequence[str],
    run_type: RunType,
    now: datetime,
    conf: dict[str, Any] | None = None,
    *,
    logical_dates: Sequence[datetime] | None = None,
    interval: timedelta = timedelta(),
    flow: Sequence[RunFlow] | None = None,
    running: Sequence[bool] | None = None,
) -> list[int]:
    """Queue one run per entry of `dag_ids` (one INSERT); returns their ids in the order given.

    `running` marks the runs that start at once (`running`, started at `now`: one row
    version where queueing then starting it makes two); the scheduler inserts them so
    only when nothing queued waits before them (`queued_runs`).

    `logical_dates` (scheduled runs) gives each run its tick: its logical date, the end
    of its data interval, which starts `interval` earlier (Airflow 3's trigger timetables
    default to none: the interval is the tick itself), and the time in its run id.
    `flow` gives each run its key, priority and hold (a DAG with flow rules).
    """
    if not dag_ids:
        return []
    rows = _run_rows(conn, dag_ids, run_type, now, conf, logical_dates, interval, flow, running)
    if len(rows) == 1:
        return [int(conn.execute(insert(dr).values(rows[0]).returning(dr.c.id)).scalar_one())]
    if conn.dialect.name == "postgresql":
        # The ids come from the sequence in the order of the rows (ORDER BY their position), as
        # SQLAlchemy's own insertmanyvalues relies on for PostgreSQL: sorted, they are in order.
        return sorted(int(i) for i in conn.execute(_create_runs_pg(conn), arrays(dr, rows, _RUN_COLUMNS)).scalars())
    return [int(r[0]) for r in conn.execute(insert(dr).returning(dr.c.id, sort_by_parameter_order=True), rows)]


def create_event_runs(
    conn: Connection,
    dag_ids: Sequence[str],
    events: Sequence[Sequence[tuple[int, int]]],
    now: datetime,
    running: Sequence[bool],
) -> list[int]:
    """Asset-triggered runs, each consuming its events: `create_runs`, `link_events` and
    `consume_events` in one (one statement on PostgreSQL). `events` gives each run its
    (queue id, event id) pairs. Returns the runs' ids in the order given.
    """
    if not dag_ids:
        return []
    if conn.dialect.name != "postgresql":
        run_pks = create_runs(conn, dag_ids, RunType.ASSET_TRIGGERED, now, running=running)
        link_events(conn, [(pk, e) for pk, evs in zip(run_pks, events, strict=True) for _, e in evs])
        consume_events(conn, [q for evs in events for q, _ in evs])
        return run_pks
    rows = _run_rows(conn, dag_ids, RunType.ASSET_TRIGGERED, now, None, None, timedelta(), None, running)
    params: dict[str, Any] = {
        **arrays(dr, rows, _RUN_COLUMNS),
        "link_run": [n for n, evs in enumerate(events, start=1) for _ in evs],
        "link_event": [e for evs in events for _, e in evs],
        "consumed": [q for evs in events for q, _ in evs],
    }
    return sorted(int(i) for i in conn.execute(_create_event_runs_pg(conn), params).scalars())


@per_dialect
def _create_event_runs_pg(dialect: str) -> Any:
    # WITH runs AS (INSERT ... RETURNING id), numbered AS (the ids in order: 1, 2, ...),
    # linked AS (INSERT INTO dag_run_event: each event with the id of its run's position),
    # consumed AS (DELETE FROM event_queue) SELECT id FROM runs
    dre, eq = t.dag_run_event, t.event_queue
    made = _insert_runs_pg().cte("runs")
    numbered = select(made.c.id, func.row_number().over(order_by=made.c.id).label("n")).cte("numbered")
    pairs = (
        func.unnest(
            bindparam("link_run", type_=ARRAY(BigInteger())), bindparam("link_event", type_=ARRAY(dre.c.event_id.type))
        )
        .table_valued("run", "event_id")
        .render_derived()
    )
    linked = insert(dre).from_select(
        ["run_pk", "event_id"],
        select(numbered.c.id, pairs.c.event_id).select_from(pairs.join(numbered, numbered.c.n == pairs.c.run)),
    )
    consumed = delete(eq).where(member(dialect, eq.c.id, "consumed"))
    return select(made.c.id).add_cte(linked.cte("linked"), consumed.cte("consumed"))


def _run_rows(
    conn: Connection,
    dag_ids: Sequence[str],
    run_type: RunType,
    now: datetime,
    conf: dict[str, Any] | None,
    logical_dates: Sequence[datetime] | None,
    interval: timedelta,
    flow: Sequence[RunFlow] | None,
    running: Sequence[bool] | None,
) -> list[dict[str, Any]]:
    """The rows of `create_runs` (and the flow marks of keyed runs, written here)."""
    dates = list(logical_dates) if logical_dates is not None else [None] * len(dag_ids)
    flows = list(flow) if flow is not None else [None] * len(dag_ids)
    starts = list(running) if running is not None else [False] * len(dag_ids)
    rows = [
        {
            "run_id": new_run_id(run_type, tick or now),
            "dag_id": dag_id,
            "state": RunState.RUNNING if start else RunState.QUEUED,
            "started_at": now if start else None,
            "run_type": run_type,
            "conf": conf or {},
            "queued_at": now,
            "logical_date": tick,
            "data_interval_start": tick - interval if tick is not None else None,
            "data_interval_end": tick,
            "run_key": f.key if f is not None else None,
            "priority": f.priority if f is not None else 0.0,
            "held_by": f.held_by if f is not None else None,
            "held_until": f.held_until if f is not None else None,
        }
        for dag_id, tick, f, start in zip(dag_ids, dates, flows, starts, strict=True)
    ]
    # thousands of runs of one pass share `now`: their 32 random bits could meet (5,000 runs: 0.3%
    # a pass), which would fail the whole pass on the unique run_id
    seen: set[str] = set()
    for row, tick in zip(rows, dates, strict=True):
        while row["run_id"] in seen:
            row["run_id"] = new_run_id(run_type, tick or now)
        seen.add(str(row["run_id"]))
    # a new keyed run is its key's news for admission (`store.flow.take_dirty`)
    mark_dirty(conn, [(d, f.key) for d, f in zip(dag_ids, flows, strict=True) if f is not None])
    return rows


_RUN_COLUMNS = (
    "run_id",
    "dag_id",
    "state",
    "run_type",
    "conf",
    "queued_at",
    "started_at",
    "logical_date",
    "data_interval_start",
    "data_interval_end",
    "run_key",
    "priority",
    "held_by",
    "held_until",
)


@per_dialect
def _create_runs_pg(dialect: str) -> Any:
    return _insert_runs_pg()


def _insert_runs_pg() -> Any:
    """INSERT INTO dag_run ... SELECT ... FROM unnest(...) ORDER BY the rows' position RETURNING id."""
    u = unnested(dr, _RUN_COLUMNS)
    rows = select(*(u.c[k] for k in _RUN_COLUMNS)).select_from(u.source).order_by(u.c[ORDINAL])
    return insert(dr).from_select(list(_RUN_COLUMNS), rows).returning(dr.c.id)


def trigger_run(conn: Connection, dag_id: str, conf: dict[str, Any], run_type: str = RunType.MANUAL) -> str:
    """Queue a run of `dag_id` with `conf` (a user's trigger, a replay); returns its run id.

    A manual run's logical date (and data interval) is the time it was triggered, as
    Airflow's trigger form and TriggerDagRunOperator fill it in; a replay of an event
    has none, like the event-driven run it repeats.
    """
    now = utcnow()
    run_id = new_run_id(run_type, now)
    logical = now if run_type == RunType.MANUAL else None
    conn.execute(
        insert(dr).values(
            run_id=run_id,
            dag_id=dag_id,
            state=RunState.QUEUED,
            run_type=str(run_type),
            conf=conf,
            queued_at=now,
            logical_date=logical,
            data_interval_start=logical,
            data_interval_end=logical,
        )
    )
    return run_id


def link_events(conn: Connection, pairs: list[tuple[int, int]]) -> None:
    """Record which events each run consumed: (run_pk, event_id)."""
    if not pairs:
        return
    if conn.dialect.name == "postgresql":
        rows = [{"run_pk": r, "event_id": e} for r, e in pairs]
        conn.execute(_link_events_pg(conn), arrays(t.dag_run_event, rows, ("run_pk", "event_id")))
        return
    conn.execute(insert(t.dag_run_event), [{"run_pk": r, "event_id": e} for r, e in pairs])


@per_dialect
def _link_events_pg(dialect: str) -> Any:
    dre = t.dag_run_event
    u = unnested(dre, ("run_pk", "event_id"))
    return insert(dre).from_select(["run_pk", "event_id"], select(u.c["run_pk"], u.c["event_id"]).select_from(u.source))


def pending_events(conn: Connection, dag_ids: list[str], limit: int) -> list[Any]:
    """Events waiting for runs of these DAGs, oldest first, locked (SKIP LOCKED)."""
    return list(conn.execute(_pending_events(conn), {"dag_ids": list(dag_ids), "limit": limit}).all())


@per_dialect
def _pending_events(dialect: str) -> Any:
    eq = t.event_queue
    return (
        select(eq.c.id, eq.c.dag_id, eq.c.event_id, eq.c.asset_id, eq.c.queued_at)
        .where(member(dialect, eq.c.dag_id, "dag_ids"))
        .order_by(eq.c.id)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
    )


def consume_events(conn: Connection, queue_ids: list[int]) -> None:
    """Events a run now holds leave the queue."""
    for i in range(0, len(queue_ids), _CHUNK):
        conn.execute(_consume_events(conn), {"ids": queue_ids[i : i + _CHUNK]})


@per_dialect
def _consume_events(dialect: str) -> Any:
    eq = t.event_queue
    return delete(eq).where(member(dialect, eq.c.id, "ids"))


def due_crons(conn: Connection, now: datetime) -> tuple[list[Any], datetime | None]:
    """DAGs whose cron time has come (locked), and the earliest cron time still ahead."""
    due = conn.execute(_DUE_CRONS, {"now": now}).all()
    earliest: datetime | None = conn.execute(_NEXT_CRON, {"now": now}).scalar()
    return list(due), earliest


_DUE_CRONS = (
    select(t.dag.c.dag_id, t.dag.c.next_cron_at)
    .where(t.dag.c.is_active, t.dag.c.next_cron_at <= bindparam("now"))
    .with_for_update(skip_locked=True)
)
_NEXT_CRON = select(func.min(t.dag.c.next_cron_at)).where(t.dag.c.is_active, t.dag.c.next_cron_at > bindparam("now"))


def set_next_cron(conn: Connection, dag_id: str, when: datetime | None) -> None:
    """When the next cron run of `dag_id` is due (None: no more, its end_date is past)."""
    conn.execute(update(t.dag).where(t.dag.c.dag_id == dag_id).values(next_cron_at=when))


def last_logical_date(conn: Connection, dag_id: str) -> datetime | None:
    """The logical date of the newest scheduled (cron) run of `dag_id`: where its schedule goes on from."""
    value: datetime | None = conn.execute(
        select(func.max(dr.c.logical_date)).where(dr.c.dag_id == dag_id, dr.c.run_type == RunType.SCHEDULED)
    ).scalar()
    return value


def queued_count(conn: Connection, dag_id: str) -> int:
    """Runs of `dag_id` waiting to start."""
    return int(
        conn.execute(
            select(func.count()).select_from(dr).where(dr.c.dag_id == dag_id, dr.c.state == RunState.QUEUED)
        ).scalar_one()
    )


def timed_out(conn: Connection, timeouts: dict[str, float], now: datetime) -> tuple[list[int], datetime | None]:
    """Running runs older than their DAG's `dagrun_timeout` (locked), and when the next one will be.

    `timeouts` maps each DAG id with a timeout to it, in seconds.
    """
    if not timeouts:
        return [], None
    expired = or_(
        *(
            and_(dr.c.dag_id == dag_id, dr.c.started_at < now - timedelta(seconds=seconds))
            for dag_id, seconds in timeouts.items()
        )
    )
    pks = [
        int(i)
        for i in conn.execute(
            select(dr.c.id).where(dr.c.state == RunState.RUNNING, expired).with_for_update(skip_locked=True)
        ).scalars()
    ]
    next_at: datetime | None = None
    for row in conn.execute(
        select(dr.c.dag_id, func.min(dr.c.started_at).label("oldest"))
        .where(dr.c.state == RunState.RUNNING, dr.c.dag_id.in_(timeouts), dr.c.id.not_in(pks or [-1]))
        .group_by(dr.c.dag_id)
    ):
        if row.oldest is None:
            continue
        at = row.oldest + timedelta(seconds=timeouts[row.dag_id])
        next_at = at if next_at is None else min(next_at, at)
    return pks, next_at


def paused_dags(conn: Connection) -> set[str]:
    """The ids of paused DAGs."""
    return set(conn.execute(_PAUSED).scalars())


_PAUSED = select(t.dag.c.dag_id).where(t.dag.c.is_paused)


def queued_runs(conn: Connection, limit: int, exclude: Iterable[str] = ()) -> list[Any]:
    """Runs waiting to start, oldest first: id, dag_id.

    Not locked: a backlog of queued runs is read, not locked, at every pass (a row lock
    is a write); `start` locks the few that start. The runs of the DAGs in `exclude`
    (those with flow rules: `store.flow.candidates`) are not read.
    """
    skipped = sorted(set(exclude))
    if skipped:
        return list(conn.execute(_queued_runs_but(conn), {"limit": limit, "skipped": skipped}).all())
    return list(conn.execute(_QUEUED_RUNS, {"limit": limit}).all())


def _queued_runs(dialect: str | None) -> Any:
    q = select(dr.c.id, dr.c.dag_id).where(dr.c.state == RunState.QUEUED)
    if dialect is not None:
        q = q.where(~member(dialect, dr.c.dag_id, "skipped"))
    return q.order_by(dr.c.id).limit(bindparam("limit"))


_QUEUED_RUNS = _queued_runs(None)
_queued_runs_but = per_dialect(_queued_runs)


def active_counts(conn: Connection, dag_ids: set[str]) -> dict[str, int]:
    """Running runs per DAG, after locking the DAGs' rows: a second scheduler waits, then counts ours."""
    if not dag_ids:
        return {}
    conn.execute(
        select(t.dag.c.dag_id).where(t.dag.c.dag_id.in_(dag_ids)).order_by(t.dag.c.dag_id).with_for_update()
    ).all()
    return {
        r.dag_id: int(r.n)
        for r in conn.execute(
            select(dr.c.dag_id, func.count().label("n"))
            .where(dr.c.state == RunState.RUNNING, dr.c.dag_id.in_(dag_ids))
            .group_by(dr.c.dag_id)
        )
    }


def start(conn: Connection, run_pks: list[int], now: datetime) -> list[int]:
    """Queued runs start; returns those that did, in id order.

    A run another transaction holds (another scheduler starting it: SKIP LOCKED), or
    that is no longer queued, does not start here: only the runs returned get tries.
    """
    started: list[int] = []
    for i in range(0, len(run_pks), _CHUNK):
        started += conn.execute(_start(conn), {"ids": run_pks[i : i + _CHUNK], "now": now}).scalars()
    return sorted(int(i) for i in started)


@per_dialect
def _start(dialect: str) -> Any:
    # Found by id alone (the primary key) and the state checked on the row locked: a state
    # index holds an entry for each old version of a busy table's rows until a vacuum, and
    # a plan reading `state = 'queued'` through it reads them all. A run started meanwhile by
    # another scheduler is locked until this commit, and not moved.
    free = skip_locked(select(dr.c.id, dr.c.state).where(member(dialect, dr.c.id, "ids")), "free")
    return (
        update(dr)
        .where(dr.c.id == free.c.id, free.c.state.in_(_from(RunState.RUNNING)))
        .values(
            state=RunState.RUNNING,
            started_at=bindparam("now", type_=dr.c.started_at.type),
            held_by=None,
            held_until=None,
        )
        .returning(dr.c.id)
    )


def finish(
    conn: Connection, state: RunState, run_pks: list[int], now: datetime, *, queued: bool = False
) -> list[tuple[int, str]]:
    """Runs end in `state` (success or failed). Only running runs move, or queued ones with `queued`.

    Returns (run pk, dag id) of the runs that moved here: a run another scheduler
    already ended is not among them, so what follows an end happens once.
    """
    if not run_pks:
        return []
    allowed = [RunState.RUNNING.value] + ([RunState.QUEUED.value] if queued else [])
    allowed = [s for s in allowed if s in _from(state)]
    moved: list[tuple[int, str]] = []
    stmt = _finish(conn)
    for i in range(0, len(run_pks), _CHUNK):
        chunk = run_pks[i : i + _CHUNK]
        rows = conn.execute(stmt, {"ids": chunk, "allowed": allowed, "new_state": state.value, "now": now}).all()
        moved += [(int(r.id), str(r.dag_id)) for r in rows]
        # a keyed run's end may let the next run of its key start (admission reads marked keys)
        mark_dirty(conn, [(str(r.dag_id), r.run_key) for r in rows])
    return moved


@per_dialect
def _finish(dialect: str) -> Any:
    return (
        update(dr)
        .where(member(dialect, dr.c.id, "ids"), member(dialect, dr.c.state, "allowed"))
        .values(
            state=bindparam("new_state", type_=dr.c.state.type), ended_at=bindparam("now", type_=dr.c.ended_at.type)
        )
        .returning(dr.c.id, dr.c.dag_id, dr.c.run_key)
    )


def requeue(conn: Connection, run_pk: int) -> bool:
    """A user's retry of a run that failed before any task started (its DAG was missing)."""
    return bool(
        conn.execute(
            update(dr)
            .where(dr.c.id == run_pk, dr.c.state == RunState.FAILED)
            .values(state=RunState.QUEUED, started_at=None, ended_at=None)
        ).rowcount
    )


def replay_run(conn: Connection, dag_id: str, event_id: int) -> str:
    """Queue a replay run of `dag_id` that consumes the event `event_id`; returns its run id."""
    run_id = trigger_run(conn, dag_id, {}, run_type=RunType.REPLAY)
    run_pk = conn.execute(select(dr.c.id).where(dr.c.run_id == run_id)).scalar_one()
    link_events(conn, [(int(run_pk), event_id)])
    return run_id


def rerun(conn: Connection, run_pk: int) -> bool:
    """A user's retry: a finished run is running again (its tries cleared by `store.tries.clear`)."""
    return bool(
        conn.execute(
            update(dr)
            .where(dr.c.id == run_pk, dr.c.state.in_(_from(RunState.RUNNING)), dr.c.state != RunState.QUEUED)
            .values(state=RunState.RUNNING, ended_at=None)
        ).rowcount
    )


def lock_runs_of_tries(conn: Connection, ti_ids: list[int]) -> None:
    """Lock the runs of these tries, in id order: two schedulers applying results of one run one
    after the other both see every finished task (READ COMMITTED). No-op on SQLite."""
    if not ti_ids or conn.dialect.name == "sqlite":
        return
    conn.execute(_lock_runs_of_tries(conn), {"ids": ti_ids}).all()


@per_dialect
def _lock_runs_of_tries(dialect: str) -> Any:
    ti = t.task_instance
    runs = select(ti.c.run_pk).where(member(dialect, ti.c.id, "ids")).scalar_subquery()
    return select(dr.c.id).where(dr.c.id.in_(runs)).order_by(dr.c.id).with_for_update()


def has_runs(conn: Connection, dag_id: str) -> bool:
    """True when the DAG `dag_id` has at least one run."""
    return conn.execute(select(dr.c.id).where(dr.c.dag_id == dag_id).limit(1)).first() is not None


def state_of(conn: Connection, run_id: str) -> str | None:
    """The state of the run `run_id`, or None when there is no such run."""
    state = conn.execute(select(dr.c.state).where(dr.c.run_id == run_id)).scalar()
    return str(state) if state is not None else None


def run_ids(conn: Connection, run_pks: Iterable[int]) -> dict[int, str]:
    """The run ids of these runs."""
    pks = sorted(set(run_pks))
    if not pks:
        return {}
    return {int(r.id): r.run_id for r in conn.execute(_run_ids(conn), {"pks": pks})}


@per_dialect
def _run_ids(dialect: str) -> Any:
    return select(dr.c.id, dr.c.run_id).where(member(dialect, dr.c.id, "pks"))


def for_requests(conn: Connection, ti_ids: list[int]) -> list[Any]:
    """Each try with its run (what a request carries), in try id order."""
    return list(conn.execute(_for_requests(conn), {"ids": ti_ids}).all())


@per_dialect
def _for_requests(dialect: str) -> Any:
    ti = t.task_instance
    return (
        select(
            ti.c.id,
            ti.c.run_pk,
            ti.c.dag_id,
            ti.c.task_id,
            ti.c.map_index,
            ti.c.try_number,
            ti.c.next_method,
            ti.c.next_kwargs,
            dr.c.run_id,
            dr.c.run_type,
            dr.c.conf,
            dr.c.started_at,
            dr.c.logical_date,
            dr.c.data_interval_start,
            dr.c.data_interval_end,
        )
        .join(dr, dr.c.id == ti.c.run_pk)
        .where(member(dialect, ti.c.id, "ids"))
        .order_by(ti.c.id)
    )


def events_of(conn: Connection, run_pks: Iterable[int]) -> list[Any]:
    """The events each run consumed, with their assets, oldest first."""
    ae, a, dre = t.asset_event, t.asset, t.dag_run_event
    return list(
        conn.execute(
            select(dre.c.run_pk, ae.c.id, ae.c.timestamp, ae.c.extra, ae.c.source, a.c.name, a.c.uri)
            .join(ae, ae.c.id == dre.c.event_id)
            .join(a, a.c.id == ae.c.asset_id)
            .where(among(conn, dre.c.run_pk, sorted(set(run_pks))))
            .order_by(ae.c.id)
        ).all()
    )


def consumers_from_db(conn: Connection, asset_id: int) -> dict[int, list[str]]:
    """The DAGs scheduled on an asset, read from the database (for processes without DAGs)."""
    rows = (
        conn.execute(
            select(t.dag_schedule_asset.c.dag_id)
            .join(t.dag, t.dag.c.dag_id == t.dag_schedule_asset.c.dag_id)
            .where(and_(t.dag_schedule_asset.c.asset_id == asset_id, t.dag.c.is_active))
        )
        .scalars()
        .all()
    )
    return {asset_id: list(rows)}
