"""The DAG sync records Airflow's DAG arguments and warnings; start/end dates bound the first cron tick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pendulum
from sqlalchemy import select

from herald import DAG, EmptyOperator
from herald.loader import DagBag
from herald.store import tables as t
from herald.store.db import make_engine
from herald.store.migrate import upgrade
from herald.store.sync import first_cron, sync_bag


def test_sync_stores_arguments_warnings_and_pauses_on_creation(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/h.db")
    upgrade(engine)
    with DAG(
        "stored",
        schedule="@daily",
        start_date=pendulum.datetime(2024, 1, 1),
        catchup=True,
        max_active_tasks=3,
        dagrun_timeout=timedelta(minutes=2),
        is_paused_upon_creation=True,
        owner_links={"me": "https://example.com"},
        tags=["a"],
    ) as d:
        EmptyOperator(task_id="a", trigger_rule="all_done")
    sync_bag(engine, DagBag(folder=tmp_path, dags={"stored": d}))
    with engine.connect() as conn:
        row = conn.execute(select(t.dag).where(t.dag.c.dag_id == "stored")).one()
    assert row.is_paused is True and row.catchup is True and row.max_active_tasks == 3
    assert row.dagrun_timeout == 120.0 and row.tags == ["a"]
    assert row.start_date == datetime(2024, 1, 1, tzinfo=UTC)
    assert row.warnings and "owner_links" in row.warnings[0]
    assert row.tasks[0]["trigger_rule"] == "all_done" and row.tasks[0]["operator"] == "EmptyOperator"
    engine.dispose()


def test_first_cron_tick_respects_start_and_end_dates() -> None:
    now = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    future = DAG("future", schedule="0 * * * *", start_date=pendulum.datetime(2024, 6, 1))
    assert first_cron(future, now) == datetime(2024, 6, 1, 0, 0, tzinfo=UTC)
    # catchup=False (Airflow 3's default): the latest tick already due runs at once, none before it
    past = DAG("past", schedule="0 * * * *", start_date=pendulum.datetime(2024, 1, 1))
    assert first_cron(past, now) == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    # ... and a schedule goes on after its newest run, never repeating it
    assert first_cron(past, now, last=datetime(2024, 5, 1, 12, 0, tzinfo=UTC)) == datetime(2024, 5, 1, 13, tzinfo=UTC)
    ended = DAG("ended", schedule="0 * * * *", end_date=pendulum.datetime(2024, 4, 1))
    assert first_cron(ended, now) is None


def test_catchup_starts_at_the_first_tick_from_start_date() -> None:
    now = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    dag = DAG("c", schedule="0 0 * * *", start_date=pendulum.datetime(2024, 4, 28, 6), catchup=True)
    assert first_cron(dag, now) == datetime(2024, 4, 29, tzinfo=UTC)
    assert first_cron(dag, now, last=datetime(2024, 4, 30, tzinfo=UTC)) == datetime(2024, 5, 1, tzinfo=UTC)
    # past its end_date nothing more is due
    done = DAG(
        "d",
        schedule="0 0 * * *",
        start_date=pendulum.datetime(2024, 4, 28),
        end_date=pendulum.datetime(2024, 4, 30),
        catchup=True,
    )
    assert first_cron(done, now, last=datetime(2024, 4, 30, tzinfo=UTC)) is None


def test_without_start_date_a_tick_just_past_still_runs() -> None:
    hourly = DAG("h", schedule="0 * * * *")
    # within max(a tenth of the gap, 5 minutes) of the tick: that tick; later: the next one
    assert first_cron(hourly, datetime(2024, 5, 1, 12, 4, tzinfo=UTC)) == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert first_cron(hourly, datetime(2024, 5, 1, 12, 20, tzinfo=UTC)) == datetime(2024, 5, 1, 13, tzinfo=UTC)


def test_a_timedelta_schedule_runs_every_period_from_start_date_or_now() -> None:
    now = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    start = pendulum.datetime(2024, 5, 1, 9, 10)
    # Airflow 3: schedule=timedelta(...) is a DeltaTriggerTimetable, no clock grid
    caught = DAG("every_caught", schedule=timedelta(hours=1), start_date=start, catchup=True)
    assert caught.schedule_description() == {"every": 3600.0, "interval": 0.0}
    assert first_cron(caught, now) == datetime(2024, 5, 1, 9, 10, tzinfo=UTC)
    assert first_cron(caught, now, last=datetime(2024, 5, 1, 9, 10, tzinfo=UTC)) == datetime(
        2024, 5, 1, 10, 10, tzinfo=UTC
    )
    # catchup=False: the first run is now (not start_date), then one period after the newest run
    latest = DAG("every_latest", schedule=timedelta(hours=1), start_date=start)
    assert first_cron(latest, now) == now
    later = datetime(2024, 5, 1, 11, 50, tzinfo=UTC)
    assert first_cron(latest, now, last=later) == datetime(2024, 5, 1, 12, 50, tzinfo=UTC)
    # a start_date in the future waits for it
    future = DAG("every_future", schedule=timedelta(minutes=5), start_date=pendulum.datetime(2024, 6, 1))
    assert first_cron(future, now) == datetime(2024, 6, 1, tzinfo=UTC)


def test_once_is_one_run_at_start_date() -> None:
    now = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    once = DAG("once", schedule="@once", start_date=pendulum.datetime(2024, 1, 1))
    assert first_cron(once, now) == datetime(2024, 1, 1, tzinfo=UTC)
    assert first_cron(once, now, last=datetime(2024, 1, 1, tzinfo=UTC)) is None
    # as Airflow's OnceTimetable: nothing without a start_date
    assert first_cron(DAG("never", schedule="@once"), now) is None


def test_continuous_and_calendar_periods_are_refused_with_what_to_use() -> None:
    import pytest
    from dateutil.relativedelta import relativedelta

    from herald import DeltaTriggerTimetable

    with pytest.raises(ValueError, match="'@continuous' is not supported"):
        DAG("c", schedule="@continuous")
    with pytest.raises(TypeError, match="relativedelta"):
        DAG("r", schedule=DeltaTriggerTimetable(relativedelta(months=1)))  # type: ignore[arg-type]
