"""The charts' figures (`store/stats.py`) from rows as the processes write them."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import insert, select, update

from herald.store import stats
from herald.store import tables as t
from herald.store.states import RunState, TryState
from herald.store.types import utcnow
from tests.unit.commands.conftest import Db


def _timed_run(db: Db, state: RunState, queued: datetime, seconds: float, event_at: datetime | None) -> str:
    """A run queued at `queued`, started then, lasting `seconds`; its first task started 1 s
    after `event_at` when an event made it."""
    run_id = db.add_run(state, {"extract": TryState.SUCCESS if state.finished else TryState.RUNNING})
    with db.engine.begin() as conn:
        pk = conn.execute(select(t.dag_run.c.id).where(t.dag_run.c.run_id == run_id)).scalar_one()
        ended = queued + timedelta(seconds=seconds) if state.finished else None
        conn.execute(
            update(t.dag_run).where(t.dag_run.c.id == pk).values(queued_at=queued, started_at=queued, ended_at=ended)
        )
        if event_at is not None:
            asset = conn.execute(select(t.asset.c.id).where(t.asset.c.name == "orders")).scalar_one()
            event = conn.execute(
                insert(t.asset_event)
                .values(asset_id=asset, source="watcher:1", extra={}, timestamp=event_at)
                .returning(t.asset_event.c.id)
            ).scalar_one()
            conn.execute(insert(t.dag_run_event).values(run_pk=pk, event_id=event))
            conn.execute(
                update(t.task_instance)
                .where(t.task_instance.c.run_pk == pk)
                .values(started_at=event_at + timedelta(seconds=1))
            )
    return run_id


def test_percentiles_are_nearest_rank_and_none_when_empty() -> None:
    assert stats.percentiles([]) == {"count": 0.0, "p50": None, "p95": None, "p99": None}
    figures = stats.percentiles([float(v) for v in range(1, 101)])
    assert (figures["p50"], figures["p95"], figures["p99"], figures["count"]) == (50.0, 95.0, 99.0, 100.0)


def test_dag_activity_counts_runs_per_slice_by_state_with_durations_and_latencies(db: Db) -> None:
    now = utcnow()
    since = now - timedelta(minutes=10)
    _timed_run(db, RunState.SUCCESS, since + timedelta(minutes=1), 4.0, since + timedelta(minutes=1))
    _timed_run(db, RunState.FAILED, since + timedelta(minutes=1, seconds=30), 2.0, since + timedelta(minutes=1))
    _timed_run(db, RunState.RUNNING, since + timedelta(minutes=9), 0.0, None)
    _timed_run(db, RunState.SUCCESS, since - timedelta(minutes=5), 1.0, None)  # before the window
    with db.engine.connect() as conn:
        figures = stats.dag_activity(conn, "process_orders", since, now, 10)
    slices = [s["states"] for s in figures["runs"]]
    assert slices[1] == {"success": 1, "failed": 1} and slices[9] == {"running": 1}
    assert sum(sum(s.values()) for s in slices) == 3
    assert figures["duration_seconds"]["count"] == 2 and figures["duration_seconds"]["p50"] == 2.0
    assert figures["duration_seconds"]["p99"] == 4.0
    assert figures["event_to_task_seconds"]["count"] == 2 and figures["event_to_task_seconds"]["p50"] == 1.0


def test_dag_grid_shows_the_newest_runs_oldest_first_with_a_state_per_task(db: Db) -> None:
    first = db.add_run(RunState.SUCCESS, {"extract": TryState.SUCCESS, "load": TryState.SUCCESS})
    second = db.add_run(RunState.FAILED, {"extract": TryState.SUCCESS, "load": TryState.FAILED})
    third = db.add_run(RunState.RUNNING, {"extract": TryState.RUNNING})
    with db.engine.connect() as conn:
        grid = stats.dag_grid(conn, "process_orders", 2)
        assert stats.dag_grid(conn, "manual", 5) == []
    assert [g["run_id"] for g in grid] == [second, third]
    assert first not in {g["run_id"] for g in grid}
    assert grid[0]["tasks"]["load"] == {"state": "failed", "count": 1}
    assert grid[1]["tasks"] == {"extract": {"state": "running", "count": 1}}


def test_a_mapped_task_in_the_grid_shows_its_most_telling_expansion(db: Db) -> None:
    run_id = db.add_run(RunState.RUNNING, {})
    with db.engine.begin() as conn:
        pk = conn.execute(select(t.dag_run.c.id).where(t.dag_run.c.run_id == run_id)).scalar_one()
        for index, state in enumerate((TryState.SUCCESS, TryState.FAILED, TryState.RUNNING)):
            conn.execute(
                insert(t.task_instance).values(
                    run_pk=pk, dag_id="process_orders", task_id="load", map_index=index, state=state, max_tries=1
                )
            )
    with db.engine.connect() as conn:
        (row,) = stats.dag_grid(conn, "process_orders", 1)
    assert row["tasks"]["load"] == {"state": "failed", "count": 3}


def test_watcher_activity_counts_its_events_and_dead_letters_per_slice(db: Db) -> None:
    watcher = db.watcher_id()
    now = utcnow()
    since = now - timedelta(minutes=6)
    with db.engine.begin() as conn:
        asset = conn.execute(select(t.asset.c.id).where(t.asset.c.name == "orders")).scalar_one()
        for minutes, source in ((1, f"watcher:{watcher}"), (1, f"watcher:{watcher}"), (5, f"watcher:{watcher}")):
            stamp = since + timedelta(minutes=minutes, seconds=10)
            conn.execute(insert(t.asset_event).values(asset_id=asset, source=source, extra={}, timestamp=stamp))
        conn.execute(insert(t.asset_event).values(asset_id=asset, source="api", extra={}, timestamp=now))
    db.add_dead_letter(watcher)
    with db.engine.connect() as conn:
        slices = stats.watcher_activity(conn, watcher, since, now + timedelta(seconds=1), 6)
    assert [s["events"] for s in slices] == [0, 2, 0, 0, 0, 1]
    assert sum(s["dead_letters"] for s in slices) == 1 and slices[-1]["dead_letters"] == 1
