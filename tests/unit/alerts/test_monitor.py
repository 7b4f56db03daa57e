"""The alert pass: episodes open, fire after their delay, fire once across schedulers, and resolve."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import insert, select, update

from herald.alerts.conditions import Thresholds, p95
from herald.alerts.monitor import evaluate
from herald.alerts.send import AlertSender, Notice, SmtpTarget
from herald.config import normalise_database_url
from herald.store import runs as store_runs
from herald.store import tables as t
from herald.store.db import Database
from herald.store.migrate import upgrade
from herald.store.states import RunState, RunType, WatcherState
from herald.store.types import utcnow


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    found = Database(normalise_database_url(database_url))
    upgrade(found.engine)
    yield found
    found.close()


def _watcher(db: Database, state: WatcherState, lag: int | None = None) -> int:
    now = utcnow()
    with db.engine.begin() as conn:
        asset_id = conn.execute(
            insert(t.asset).values(name="jobs", uri="jobs", created_at=now).returning(t.asset.c.id)
        ).scalar_one()
        return int(
            conn.execute(
                insert(t.watcher)
                .values(
                    asset_id=asset_id,
                    name="w",
                    trigger={},
                    consumer_key="k",
                    state=state,
                    last_error="Connection refused",
                    lag=lag,
                    updated_at=now,
                )
                .returning(t.watcher.c.id)
            ).scalar_one()
        )


def test_a_down_watcher_fires_after_its_delay_once_across_schedulers_and_resolves(db: Database) -> None:
    wid = _watcher(db, WatcherState.RECONNECTING)
    thresholds = Thresholds(watcher_after=30, dag_failures=False)
    now = utcnow()

    # seen, not yet for long enough: nothing is sent
    assert evaluate(db, thresholds, now) == []
    assert evaluate(db, thresholds, now + timedelta(seconds=10)) == []

    # held 30 s: two schedulers evaluate, one sends
    first = evaluate(db, thresholds, now + timedelta(seconds=31))
    second = evaluate(db, thresholds, now + timedelta(seconds=32))
    assert [(n.key, n.state, n.kind) for n in first] == [(f"watcher:{wid}:down", "firing", "watcher_down")]
    assert "is reconnecting: Connection refused" in first[0].summary
    assert second == []

    # fixed: resolved once, with the same episode
    with db.engine.begin() as conn:
        conn.execute(update(t.watcher).values(state=WatcherState.RUNNING))
    resolved = evaluate(db, thresholds, now + timedelta(seconds=40))
    assert [(n.state, n.episode) for n in resolved] == [("resolved", first[0].episode)]
    assert evaluate(db, thresholds, now + timedelta(seconds=41)) == []

    # down again: a new episode, which fires after its own delay
    with db.engine.begin() as conn:
        conn.execute(update(t.watcher).values(state=WatcherState.FAILED))
    assert evaluate(db, thresholds, now + timedelta(seconds=50)) == []
    again = evaluate(db, thresholds, now + timedelta(seconds=81))
    assert [(n.state, n.episode) for n in again] == [("firing", first[0].episode + 1)]


def test_a_condition_that_clears_before_its_delay_sends_nothing(db: Database) -> None:
    _watcher(db, WatcherState.RUNNING, lag=50_000)
    thresholds = Thresholds(watcher_after=30, watcher_lag=1000, dag_failures=False)
    now = utcnow()
    assert evaluate(db, thresholds, now) == []
    with db.engine.begin() as conn:
        conn.execute(update(t.watcher).values(lag=10))
    assert evaluate(db, thresholds, now + timedelta(seconds=31)) == []
    with db.engine.connect() as conn:
        assert conn.execute(select(t.alert)).all() == []


def test_a_paused_watcher_is_not_down(db: Database) -> None:
    _watcher(db, WatcherState.PAUSED)
    thresholds = Thresholds(watcher_after=30, dag_failures=False)
    now = utcnow()
    assert evaluate(db, thresholds, now) == []
    assert evaluate(db, thresholds, now + timedelta(seconds=31)) == []


def test_a_failing_dag_fires_once_and_its_success_resolves(db: Database) -> None:
    now = utcnow()
    with db.engine.begin() as conn:
        conn.execute(insert(t.dag).values(dag_id="etl", fileloc="x.py", task_ids=[], tasks=[], updated_at=now))
        runs = store_runs.create_runs(conn, ["etl"] * 3, RunType.MANUAL, now)
        store_runs.start(conn, runs, now)
        store_runs.finish(conn, RunState.FAILED, runs[:1], now)
    thresholds = Thresholds()
    (fired,) = evaluate(db, thresholds, now)
    assert (fired.key, fired.state, fired.detail["dag_id"]) == ("dag:etl:failing", "firing", "etl")
    with db.engine.begin() as conn:
        store_runs.finish(conn, RunState.FAILED, runs[1:2], now)
    assert evaluate(db, thresholds, now) == []
    with db.engine.begin() as conn:
        store_runs.finish(conn, RunState.SUCCESS, runs[2:], now)
    (resolved,) = evaluate(db, thresholds, now)
    assert (resolved.key, resolved.state) == ("dag:etl:failing", "resolved")


def test_p95_is_the_nearest_rank() -> None:
    assert p95([1.0]) == 1.0
    assert p95([float(i) for i in range(1, 101)]) == 95.0


def test_a_dead_receiver_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nobody listens there
    sender = AlertSender(f"http://127.0.0.1:{port}/hook", SmtpTarget("127.0.0.1", port, "h@x", ("ops@x",)), timeout=2)
    notice = Notice("k", "watcher_down", "firing", "down", {}, "2026-01-01", "2026-01-01", 1)
    sender.send(notice)
    sender.close()
    assert "alert webhook" in caplog.text and "alert e-mail" in caplog.text


def test_an_event_to_task_latency_above_the_threshold_fires(db: Database) -> None:
    now = utcnow()
    with db.engine.begin() as conn:
        asset_id = conn.execute(
            insert(t.asset).values(name="jobs", uri="jobs", created_at=now).returning(t.asset.c.id)
        ).scalar_one()
        runs = store_runs.create_runs(conn, ["slow", "fast"], RunType.ASSET_TRIGGERED, now)
        store_runs.start(conn, runs, now)
        for run_pk, (dag_id, delay) in zip(runs, [("slow", 12.0), ("fast", 0.5)], strict=True):
            event_id = conn.execute(
                insert(t.asset_event)
                .values(asset_id=asset_id, source="api", extra={}, timestamp=now - timedelta(seconds=delay))
                .returning(t.asset_event.c.id)
            ).scalar_one()
            conn.execute(insert(t.dag_run_event).values(run_pk=run_pk, event_id=event_id))
            conn.execute(
                insert(t.task_instance).values(
                    run_pk=run_pk, dag_id=dag_id, task_id="a", state="running", started_at=now
                )
            )
    thresholds = Thresholds(latency_seconds=5.0, latency_window=60.0, dag_failures=False)
    (fired,) = evaluate(db, thresholds, now)
    assert (fired.key, fired.kind) == ("dag:slow:latency", "latency")
    assert fired.detail["p95_seconds"] == 12.0 and fired.detail["runs"] == 1
    # out of the window: the condition clears and resolves
    (resolved,) = evaluate(db, thresholds, now + timedelta(seconds=120))
    assert (resolved.key, resolved.state) == ("dag:slow:latency", "resolved")
