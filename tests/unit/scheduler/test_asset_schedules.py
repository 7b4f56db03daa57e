"""Run creation for Airflow's asset timetables, on SQLite and PostgreSQL: one run per event or batched
(`batch_asset_events`), `AssetAndTimeSchedule` ticks gated on assets, and aliases resolving to assets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update

from herald.airflow import EmptyOperator
from herald.config import normalise_database_url
from herald.loader import DagBag
from herald.scheduler import runs
from herald.sdk.assets import Asset, AssetAlias
from herald.sdk.dag import DAG
from herald.sdk.timetables import AssetAndTimeSchedule, AssetOrTimeSchedule, AssetTriggeredTimetable
from herald.store import events
from herald.store import tables as t
from herald.store.aliases import TaskEvent, emit_task_events
from herald.store.db import make_engine
from herald.store.migrate import upgrade
from herald.store.sync import sync_bag
from herald.store.types import utcnow

ORDERS = Asset("orders")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    found = make_engine(normalise_database_url(database_url))
    upgrade(found)
    yield found
    found.dispose()


def _dag(dag_id: str, schedule: object) -> DAG:
    with DAG(dag_id, schedule=schedule) as dag:  # type: ignore[arg-type]
        EmptyOperator(task_id="t")
    return dag


def _sync(engine: Engine, *dags: DAG) -> tuple[dict[str, DAG], dict[str, int], dict[int, list[str]]]:
    bag = DagBag(folder=Path("."), dags={d.dag_id: d for d in dags})
    catalog = sync_bag(engine, bag)
    return bag.dags, catalog.asset_ids, catalog.consumers


def _emit(engine: Engine, asset_id: int, consumers: dict[int, list[str]], n: int) -> None:
    now = utcnow()
    with engine.begin() as conn:
        rows = [
            {"asset_id": asset_id, "source": "api", "dedupe_key": f"k{i}", "extra": {"i": i}, "timestamp": now}
            for i in range(n)
        ]
        events.insert_events(conn, rows, consumers, now)


def _runs(engine: Engine) -> dict[str, list[int]]:
    """dag id -> the number of events of each of its runs, in run order."""
    found: dict[str, list[int]] = {}
    with engine.connect() as conn:
        rows = conn.execute(
            select(t.dag_run.c.dag_id, func.count(t.dag_run_event.c.event_id))
            .outerjoin(t.dag_run_event, t.dag_run_event.c.run_pk == t.dag_run.c.id)
            .group_by(t.dag_run.c.id, t.dag_run.c.dag_id)
            .order_by(t.dag_run.c.id)
        ).all()
    for dag_id, count in rows:
        found.setdefault(dag_id, []).append(int(count))
    return found


def test_one_run_per_event_or_batched_as_batch_asset_events_says(engine: Engine) -> None:
    per_event = _dag("per_event", AssetTriggeredTimetable(ORDERS))
    batched = _dag("batched", AssetTriggeredTimetable(ORDERS, batch_asset_events=True))
    either = _dag("either", AssetOrTimeSchedule(timetable="0 * * * *", assets=[ORDERS], batch_asset_events=True))
    dags, ids, consumers = _sync(engine, per_event, batched, either)
    _emit(engine, ids["orders"], consumers, 3)
    with engine.begin() as conn:
        runs.create_asset_runs(conn, dags, ids, set(), utcnow())
    assert _runs(engine) == {"per_event": [1, 1, 1], "batched": [3], "either": [3]}
    # AssetOrTimeSchedule also runs on its ticks
    assert either.cron == "0 * * * *" and batched.cron is None


def test_an_and_condition_always_batches_and_refuses_batch_asset_events_false() -> None:
    both = AssetTriggeredTimetable([ORDERS, Asset("b")])
    assert both.batch_asset_events is True
    with pytest.raises(ValueError, match="Asset AND conditions require batch_asset_events=True"):
        AssetTriggeredTimetable(ORDERS & Asset("b"), batch_asset_events=False)
    assert AssetTriggeredTimetable(ORDERS | Asset("b")).batch_asset_events is False


def test_asset_and_time_schedule_runs_at_the_tick_only_once_the_assets_have_events(engine: Engine) -> None:
    gated = _dag("gated", AssetAndTimeSchedule(timetable="0 * * * *", assets=[ORDERS]))
    assert gated.asset_condition is None and gated.gate_condition == ORDERS
    dags, ids, consumers = _sync(engine, gated)
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(update(t.dag).values(next_cron_at=now - timedelta(seconds=1)))
    # Given the tick has come and no event: no run, and the tick keeps waiting
    with engine.begin() as conn:
        runs.create_cron_runs(conn, dags, set(), now, ids)
        runs.create_asset_runs(conn, dags, ids, set(), now)
    assert _runs(engine) == {}
    with engine.connect() as conn:
        assert conn.execute(select(t.dag.c.next_cron_at)).scalar_one() <= now
    # When the events arrive, the waiting tick makes one scheduled run consuming them
    _emit(engine, ids["orders"], consumers, 2)
    with engine.begin() as conn:
        runs.create_asset_runs(conn, dags, ids, set(), utcnow())  # events alone start nothing
    assert _runs(engine) == {}
    with engine.begin() as conn:
        runs.create_cron_runs(conn, dags, set(), utcnow(), ids)
    assert _runs(engine) == {"gated": [2]}
    with engine.connect() as conn:
        assert conn.execute(select(t.dag_run.c.run_type)).scalar_one() == "scheduled"
        assert conn.execute(select(t.dag.c.next_cron_at)).scalar_one() > now
        assert conn.execute(select(func.count()).select_from(t.event_queue)).scalar_one() == 0


def test_a_dag_on_an_alias_runs_for_events_through_it_then_for_its_resolved_assets(engine: Engine) -> None:
    consumer = _dag("on_alias", [AssetAlias("out")])
    dags, ids, consumers = _sync(engine, consumer)

    def consumers_of(asset_id: int, asset: object, aliases: tuple[str, ...]) -> list[str]:
        return ["on_alias"] if "out" in aliases else consumers.get(asset_id, [])

    def emit(key: str, aliases: tuple[tuple[str, str], ...]) -> None:
        event = TaskEvent(
            asset={"name": "made", "uri": "s3://b/made"},
            extra={},
            dag_id="p",
            task_id="t",
            run_id=key,
            aliases=aliases,
            dedupe_key=key,
        )
        with engine.begin() as conn:
            emit_task_events(conn, [event], consumers_of, utcnow())

    emit("r1", (("out", "asset"),))
    with engine.begin() as conn:
        runs.create_asset_runs(conn, dags, ids, set(), utcnow())
    assert _runs(engine) == {"on_alias": [1]}
    # After a re-sync, the alias is resolved: an event of the asset, not through the alias, runs it too
    dags, ids, consumers = _sync(engine, consumer)
    assert consumers[ids["made"]] == ["on_alias"]
    _emit(engine, ids["made"], consumers, 1)
    with engine.begin() as conn:
        runs.create_asset_runs(conn, dags, ids, set(), utcnow())
    assert _runs(engine) == {"on_alias": [1, 1]}


def test_inlet_events_are_the_latest_events_oldest_first_capped(engine: Engine) -> None:
    from herald.store.aliases import recent_events

    consumer = _dag("reader", [ORDERS])
    _dags, ids, consumers = _sync(engine, consumer)
    _emit(engine, ids["orders"], consumers, 3)
    with engine.connect() as conn:
        found = recent_events(conn, ["orders", "unknown"], [], limit=2)
    assert set(found["assets"]) == {"orders"}
    assert [e["extra"]["i"] for e in found["assets"]["orders"]["events"]] == [1, 2]
    assert found["assets"]["orders"]["asset"]["uri"] == "orders"


def test_new_runs_start_at_once_unless_older_runs_wait_queued(engine: Engine) -> None:
    from herald.store import runs as store_runs
    from herald.store.states import RunState, RunType, TryState

    per_event = _dag("per_event", AssetTriggeredTimetable(ORDERS))
    dags, ids, consumers = _sync(engine, per_event)
    _emit(engine, ids["orders"], consumers, 2)
    with engine.begin() as conn:
        made = runs.create_asset_runs(conn, dags, ids, set(), utcnow(), budget=10)
    # nothing waited: both runs start as they are made, their first tries queued
    assert made.begun == 2 and len(made.ready.queued) == 2 and made.ready.ready == []
    with engine.connect() as conn:
        states = conn.execute(select(t.dag_run.c.state, t.dag_run.c.started_at)).all()
        tries = conn.execute(select(t.task_instance.c.state, t.task_instance.c.try_number)).all()
    assert {s for s, _ in states} == {RunState.RUNNING} and all(at is not None for _, at in states)
    assert sorted(tries) == [(TryState.QUEUED, 1), (TryState.QUEUED, 1)]

    with engine.begin() as conn:
        store_runs.create_runs(conn, ["per_event"], RunType.MANUAL, utcnow())  # an older run waits
        row = {"asset_id": ids["orders"], "source": "api", "dedupe_key": "later", "extra": {}, "timestamp": utcnow()}
        events.insert_events(conn, [row], consumers, utcnow())
    with engine.begin() as conn:
        made = runs.create_asset_runs(conn, dags, ids, set(), utcnow(), budget=10)
    # the new run queues behind it: `start_runs` starts them oldest first
    assert made.begun == 0
    with engine.connect() as conn:
        queued = conn.execute(select(t.dag_run.c.id).where(t.dag_run.c.state == RunState.QUEUED)).all()
    assert len(queued) == 2


def test_a_run_left_queued_beside_runs_started_at_once_is_started_in_the_same_pass(engine: Engine) -> None:
    from herald.store.states import RunState

    free = _dag("free", AssetTriggeredTimetable(ORDERS))
    with DAG("limited", schedule=AssetTriggeredTimetable(ORDERS), max_active_runs=1) as limited:
        EmptyOperator(task_id="t")
    dags, ids, consumers = _sync(engine, free, limited)
    _emit(engine, ids["orders"], consumers, 1)
    with engine.begin() as conn:
        now = utcnow()
        made = runs.create_asset_runs(conn, dags, ids, set(), now, budget=10)
        # `free`'s run starts as it is made; `limited`'s (max_active_runs) is left to start_runs,
        # which must read the queue in this pass rather than take it as empty
        assert made.begun == 1 and not made.none_queued
        budget = 10 - made.begun
        started, _more, _decided = runs.start_runs(conn, dags, set(), now, budget, none_queued=made.none_queued)
        assert len(started.ready) + len(started.queued) == 1
    with engine.connect() as conn:
        states = dict(conn.execute(select(t.dag_run.c.dag_id, t.dag_run.c.state)).all())
    assert states == {"free": RunState.RUNNING, "limited": RunState.RUNNING}
