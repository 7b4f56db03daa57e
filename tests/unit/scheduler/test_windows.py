"""Windows (`(a & b).within(...)`) and absences (`a.missing_for(...)`), planned on SQLite and PostgreSQL.

Events are stored with the times the test chooses and the planner is called at the
times the test chooses, so windows closing and keys going silent need no waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from herald.airflow import EmptyOperator
from herald.config import normalise_database_url
from herald.loader import DagBag
from herald.scheduler import windows
from herald.scheduler.scheduler import Scheduler
from herald.sdk.assets import Asset
from herald.sdk.dag import DAG
from herald.sdk.waits import payload_of
from herald.store import events
from herald.store import tables as t
from herald.store.db import Database, make_engine
from herald.store.migrate import upgrade
from herald.store.sync import sync_bag
from herald.store.types import utcnow
from tests.unit.scheduler.test_passes import Recorder

PAYMENTS = Asset("payments")
SHIPMENTS = Asset("shipments")
READINGS = Asset("readings")
T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=utcnow().tzinfo)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    found = make_engine(normalise_database_url(database_url))
    upgrade(found)
    yield found
    found.dispose()


@dataclass
class World:
    engine: Engine
    dags: dict[str, DAG]
    asset_ids: dict[str, int]
    consumers: dict[int, list[str]]
    n: int = 0

    def emit(self, asset: Asset, payload: dict[str, Any], at: float) -> None:
        """An event of `asset` stored `at` seconds after T0."""
        self.n += 1
        when = T0 + timedelta(seconds=at)
        row = {
            "asset_id": self.asset_ids[asset.name],
            "source": "api",
            "dedupe_key": f"e{self.n}",
            "extra": {"payload": payload},
            "timestamp": when,
        }
        with self.engine.begin() as conn:
            events.insert_events(conn, [row], self.consumers, when)

    def plan(self, at: float) -> datetime | None:
        with self.engine.begin() as conn:
            wake, _ = windows.plan(conn, self.dags, set(), T0 + timedelta(seconds=at), self.asset_ids)
        return wake

    def runs(self) -> list[tuple[dict[str, Any], list[Any]]]:
        """Each run's conf and its events' payloads, in run order."""
        dr, dre, ae = t.dag_run, t.dag_run_event, t.asset_event
        with self.engine.connect() as conn:
            found = []
            for run in conn.execute(select(dr.c.id, dr.c.conf).order_by(dr.c.id)).all():
                payloads = conn.execute(
                    select(ae.c.extra)
                    .join(dre, dre.c.event_id == ae.c.id)
                    .where(dre.c.run_pk == run.id)
                    .order_by(ae.c.id)
                ).scalars()
                found.append((run.conf, [payload_of(e) for e in payloads]))
        return found

    def queued(self) -> int:
        with self.engine.connect() as conn:
            return len(conn.execute(select(t.event_queue.c.id)).all())


def _world(engine: Engine, schedule: object) -> World:
    with DAG("watch", schedule=schedule) as dag:  # type: ignore[arg-type]
        EmptyOperator(task_id="alert")
    catalog = sync_bag(engine, DagBag(folder=Path("."), dags={"watch": dag}))
    return World(engine, {"watch": dag}, catalog.asset_ids, catalog.consumers)


def test_events_of_one_key_within_the_window_make_one_run(engine: Engine) -> None:
    w = _world(engine, (PAYMENTS & SHIPMENTS).within(60, key="order"))
    w.emit(PAYMENTS, {"order": "A", "n": 1}, at=0)
    w.emit(SHIPMENTS, {"order": "B", "n": 2}, at=5)  # another order: no partner
    assert w.plan(at=6) == T0 + timedelta(seconds=60)  # when the first window closes
    assert w.runs() == []
    w.emit(SHIPMENTS, {"order": "A", "n": 3}, at=30)
    w.plan(at=31)
    assert w.runs() == [({"key": "A", "within": 60.0}, [{"order": "A", "n": 1}, {"order": "A", "n": 3}])]
    assert w.queued() == 1  # B's shipment still waits for its payment


def test_events_further_apart_than_the_window_never_make_a_run_and_leave_the_queue(engine: Engine) -> None:
    w = _world(engine, (PAYMENTS & SHIPMENTS).within(60, key="order"))
    w.emit(PAYMENTS, {"order": "A"}, at=0)
    w.emit(SHIPMENTS, {"order": "A"}, at=61)
    w.plan(at=62)
    assert w.runs() == []
    assert w.queued() == 1  # the payment is gone; the shipment waits for a payment until at=121
    assert w.plan(at=122) is None
    assert w.queued() == 0
    w.emit(PAYMENTS, {"order": "A"}, at=130)  # a payment long after: alone again
    w.plan(at=131)
    assert w.runs() == []


def test_a_key_that_goes_silent_makes_one_run_per_silence_and_none_while_it_sends(engine: Engine) -> None:
    w = _world(engine, READINGS.missing_for(30, key="device"))
    for at in range(0, 100, 10):  # d2 reports every 10 s for 100 s
        w.emit(READINGS, {"device": "d2", "t": at}, at=at)
    w.emit(READINGS, {"device": "d1", "t": 5}, at=5)
    assert w.plan(at=20) == T0 + timedelta(seconds=35)
    assert w.runs() == []
    w.plan(at=36)
    w.plan(at=60)  # still silent: the same silence, no second run
    assert w.runs() == [
        (
            {
                "key": "d1",
                "last_seen": (T0 + timedelta(seconds=5)).isoformat(),
                "silent_for": 30.0,
                "asset": "readings",
            },
            [{"device": "d1", "t": 5}],
        )
    ]
    w.emit(READINGS, {"device": "d1", "t": 70}, at=70)  # d1 is back
    w.plan(at=95)
    assert len(w.runs()) == 1
    w.plan(at=101)  # silent again since 70: a second run; d2 has been silent since 90 only
    assert [conf["key"] for conf, _ in w.runs()] == ["d1", "d1"]
    assert w.runs()[1][1] == [{"device": "d1", "t": 70}]


def test_a_silence_seen_by_one_scheduler_makes_its_run_in_a_restarted_one(tmp_path: Path, database_url: str) -> None:
    """The keys heard from are in the database: a new scheduler (a restart) makes the silence's run, once."""
    db = Database(normalise_database_url(database_url))
    upgrade(db.engine)
    try:
        w = _world(db.engine, READINGS.missing_for(1, key="device"))
        now = utcnow()
        with db.engine.begin() as conn:
            row = {"asset_id": w.asset_ids["readings"], "source": "api", "dedupe_key": "x", "extra": {"device": "d1"}}
            events.insert_events(conn, [{**row, "timestamp": now}], w.consumers, now)
        scheduler = Scheduler(db, Recorder(), asyncio.Event())
        scheduler.update(w.dags, w.asset_ids, w.consumers)
        outcome = scheduler._pass([], [])
        assert w.runs() == []  # heard from just now
        assert outcome.next_at is not None and outcome.next_at <= now + timedelta(seconds=1)

        scheduler = Scheduler(db, Recorder(), asyncio.Event())  # restarted
        scheduler.update(w.dags, w.asset_ids, w.consumers)
        deadline = utcnow() + timedelta(seconds=20)
        while not w.runs() and utcnow() < deadline:
            time.sleep(
                max(0.0, ((outcome.next_at or utcnow()) - utcnow()).total_seconds())
            )  # the silence is time itself
            outcome = scheduler._pass([], [])
        scheduler._pass([], [])
        assert [conf["key"] for conf, _ in w.runs()] == ["d1"]
    finally:
        db.close()


def test_windows_and_absences_are_a_whole_schedule() -> None:
    with pytest.raises(ValueError, match="whole schedule"):
        DAG("mixed", schedule=PAYMENTS & READINGS.missing_for(10))
    with pytest.raises(TypeError, match="whole schedule"):
        (PAYMENTS & SHIPMENTS).within(10) | READINGS
    with pytest.raises(ValueError, match="positive"):
        READINGS.missing_for(0)
    with pytest.raises(ValueError, match="JMESPath"):
        (PAYMENTS & SHIPMENTS).within(10, key="==")
