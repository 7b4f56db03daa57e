"""Scheduler passes, one transaction each: events -> runs -> tries handed to the executor -> results -> run ends.

Each pass is driven by hand against a real database (SQLite and PostgreSQL), with
an executor that only records what it is handed, so every step can be looked at.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, select

from herald.config import normalise_database_url
from herald.executors.records import TaskRequest, TaskResult, TaskStarted
from herald.loader import load_folder
from herald.scheduler.scheduler import PassOutcome, Scheduler
from herald.store import tables as t
from herald.store.db import Database
from herald.store.events import NewEvent, insert_events
from herald.store.migrate import upgrade
from herald.store.states import RunState, TryState
from herald.store.sync import sync_bag
from herald.store.types import utcnow

DAGS = """
from herald import Asset, dag, task

orders = Asset("orders")

@dag(schedule=[orders], max_active_runs=1)
def chain():
    @task
    def extract(triggering_asset_events):
        return 1

    @task(retries=1, retry_delay=60)
    def load(x):
        return x

    load(extract())

chain()
"""


@dataclass
class Recorder:
    """An executor that runs nothing: it keeps what each pass hands it."""

    submitted: list[TaskRequest] = field(default_factory=list)
    workers_in_process: bool = False
    wake_channel: str | None = None
    needs_requests: bool = True

    def start(self, on_started: Callable[[TaskStarted], None], on_result: Callable[[TaskResult], None]) -> None:
        pass

    def collect(self, conn: Connection, now: datetime) -> tuple[list[TaskResult], bool]:
        return [], False

    def queued(self, conn: Connection) -> int:
        return 0

    def submit(self, requests: list[TaskRequest]) -> None:
        self.submitted.extend(requests)

    def reload(self) -> None:
        pass

    async def stop(self, grace: float) -> None:
        pass


@dataclass
class Passes:
    db: Database
    scheduler: Scheduler
    executor: Recorder
    asset_id: int
    consumers: dict[int, list[str]]

    def emit(self, n: int) -> None:
        now = utcnow()
        rows = [NewEvent(self.asset_id, "test", f"{n}-{now.timestamp()}", {"payload": n}, now)]
        with self.db.engine.begin() as conn:
            insert_events(conn, rows, self.consumers, now)

    def run(self, *results: TaskResult) -> PassOutcome:
        """One pass, as the loop makes it; the requests go to the executor after the commit."""
        outcome = self.scheduler._pass(list(results), [])
        if outcome.requests:
            self.executor.submit(outcome.requests)
        return outcome

    def take(self) -> list[TaskRequest]:
        handed, self.executor.submitted = self.executor.submitted, []
        return handed

    def runs(self) -> list[tuple[str, str]]:
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(t.dag_run.c.run_id, t.dag_run.c.state).order_by(t.dag_run.c.id)).all()
        return [(r.run_id, r.state) for r in rows]

    def tries(self, run_id: str) -> dict[str, str]:
        ti, dr = t.task_instance, t.dag_run
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                select(ti.c.task_id, ti.c.state).join(dr, dr.c.id == ti.c.run_pk).where(dr.c.run_id == run_id)
            ).all()
        return {r.task_id: r.state for r in rows}


@pytest.fixture
def passes(tmp_path: Path, database_url: str) -> Iterator[Passes]:
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "chain.py").write_text(textwrap.dedent(DAGS))
    db = Database(normalise_database_url(database_url))
    upgrade(db.engine)
    bag = load_folder(folder)
    assert not bag.errors, bag.errors
    catalog = sync_bag(db.engine, bag)
    executor = Recorder()
    scheduler = Scheduler(db, executor, asyncio.Event())
    scheduler.update(bag.dags, catalog.asset_ids, catalog.consumers)
    yield Passes(db, scheduler, executor, catalog.asset_ids["orders"], catalog.consumers)
    db.close()


def success(request: TaskRequest, value: object) -> TaskResult:
    now = utcnow()
    return TaskResult(
        request.ti_id, TryState.SUCCESS, result=value, started_at=now, ended_at=now, try_number=request.try_number
    )


def test_an_event_becomes_a_run_whose_tasks_are_handed_over_in_dependency_order(passes: Passes) -> None:
    passes.emit(1)
    passes.run()
    [(run_id, state)] = passes.runs()
    assert state == RunState.RUNNING
    [extract] = passes.take()
    assert (extract.task_id, extract.try_number) == ("extract", 1)
    assert [e["extra"]["payload"] for e in extract.events] == [1]  # the event travels with the request
    assert passes.tries(run_id) == {"extract": TryState.QUEUED, "load": TryState.NONE}

    passes.run(success(extract, 41))
    [load] = passes.take()
    assert (load.task_id, load.upstream) == ("load", {"extract": 41})

    passes.run(success(load, 41))
    assert passes.take() == []
    assert passes.runs() == [(run_id, RunState.SUCCESS)]
    assert passes.tries(run_id) == {"extract": TryState.SUCCESS, "load": TryState.SUCCESS}


def test_max_active_runs_keeps_the_next_event_s_run_queued_until_the_first_ends(passes: Passes) -> None:
    passes.emit(1)
    passes.emit(2)
    passes.run()
    (first, second) = passes.runs()
    assert (first[1], second[1]) == (RunState.RUNNING, RunState.QUEUED)
    [extract] = passes.take()
    passes.run(success(extract, 1))
    [load] = passes.take()
    passes.run(success(load, 1))
    assert [s for _, s in passes.runs()] == [RunState.SUCCESS, RunState.RUNNING]
    [next_extract] = passes.take()
    assert next_extract.task_id == "extract" and [e["extra"]["payload"] for e in next_extract.events] == [2]


def test_a_failed_try_with_retries_waits_its_delay_and_a_late_result_is_ignored(passes: Passes) -> None:
    passes.emit(1)
    passes.run()
    [extract] = passes.take()
    passes.run(success(extract, 1))
    [load] = passes.take()
    now = utcnow()
    outcome = passes.run(TaskResult(load.ti_id, TryState.FAILED, error="boom", ended_at=now, try_number=1))
    [(run_id, _)] = passes.runs()
    assert passes.tries(run_id)["load"] == TryState.UP_FOR_RETRY
    assert passes.take() == []  # not before its retry_delay
    assert outcome.next_at is not None and outcome.next_at >= now + timedelta(seconds=55)
    # The first try's result arriving again (a duplicate delivery) changes nothing.
    passes.run(success(load, 1))
    assert passes.tries(run_id)["load"] == TryState.UP_FOR_RETRY
    assert passes.runs() == [(run_id, RunState.RUNNING)]
