"""Scheduler passes against a real database (SQLite and PostgreSQL), with an executor that only records:
mapped tasks expand, max_active_tasks holds tries back, dagrun_timeout ends runs and stops their tries."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from herald import DAG, task
from herald.executors.records import TaskRequest, TaskResult
from herald.scheduler.scheduler import Scheduler
from herald.store import tables
from herald.store.db import Database
from herald.store.migrate import upgrade
from herald.store.runs import trigger_run
from herald.store.states import TryState
from herald.store.types import utcnow


class _Executor:
    workers_in_process = False
    wake_channel: str | None = None
    needs_requests = True

    def __init__(self) -> None:
        self.submitted: list[TaskRequest] = []
        self.cancelled: list[int] = []

    def start(self, on_started: object, on_result: object) -> None:
        pass

    def collect(self, conn: object, now: object) -> tuple[list[TaskResult], bool]:
        return [], False

    def queued(self, conn: object) -> int:
        return 0

    def submit(self, requests: list[TaskRequest]) -> None:
        self.submitted += requests

    def cancel(self, ti_ids: list[int]) -> None:
        self.cancelled += ti_ids

    def reload(self) -> None:
        pass

    async def stop(self, grace: float) -> None:
        pass


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    found = Database(database_url)
    upgrade(found.engine)
    yield found
    found.close()


def _scheduler(db: Database, *dags: DAG, max_map_length: int = 1024) -> tuple[Scheduler, _Executor]:
    executor = _Executor()
    scheduler = Scheduler(db, executor, asyncio.Event(), max_map_length=max_map_length)
    scheduler.update({d.dag_id: d for d in dags}, {}, {})
    with db.engine.begin() as conn:
        for d in dags:
            conn.execute(
                tables.dag.insert().values(
                    dag_id=d.dag_id, fileloc="", task_ids=[], tasks=[], is_paused=False, updated_at=utcnow()
                )
            )
    return scheduler, executor


def _step(scheduler: Scheduler, executor: _Executor, *results: TaskResult) -> list[TaskRequest]:
    executor.submitted = []
    outcome = scheduler._pass(list(results), [])
    if outcome.cancel:
        executor.cancel(outcome.cancel)
    executor.submit(outcome.requests)
    return executor.submitted


def _ok(request: TaskRequest, value: object) -> TaskResult:
    return TaskResult(request.ti_id, TryState.SUCCESS, result=value, try_number=request.try_number)


def _tries(db: Database) -> list[tuple[str, int, str]]:
    ti = tables.task_instance
    with db.engine.connect() as conn:
        rows = conn.execute(select(ti.c.task_id, ti.c.map_index, ti.c.state).order_by(ti.c.task_id, ti.c.map_index))
        return [(r.task_id, r.map_index, r.state) for r in rows]


def test_a_pass_expands_mapped_tasks_and_sends_each_its_map_index(db: Database) -> None:
    with DAG("m") as dag:

        @task
        def numbers() -> list[int]:
            return [1, 2, 3]

        @task
        def add(x: int, y: int) -> int:
            return x + y

        @task
        def total(values: list[int]) -> int:
            return sum(values)

        @task
        def empty() -> list[int]:
            return []

        @task
        def never(x: int) -> int:
            return x

        @task
        def after(values: list[int]) -> list[int]:
            return values

        total(add.partial(y=10).expand(x=numbers()))
        after(never.expand(x=empty()))
        add.override(task_id="literal").expand(x=[5, 6], y=[0])

    scheduler, executor = _scheduler(db, dag)
    with db.engine.begin() as conn:
        trigger_run(conn, "m", {})
    first = _step(scheduler, executor)
    # a mapped task over literal values expands as its run starts
    assert sorted((r.task_id, r.map_index) for r in first) == [
        ("empty", -1),
        ("literal", 0),
        ("literal", 1),
        ("numbers", -1),
    ]
    by_id = {r.task_id: r for r in first}
    mapped = _step(scheduler, executor, _ok(by_id["numbers"], [1, 2, 3]), _ok(by_id["empty"], []))
    # one try per value of the upstream result; nothing to map over: skipped, and so is its downstream
    assert sorted((r.task_id, r.map_index) for r in mapped) == [("add", 0), ("add", 1), ("add", 2)]
    assert ("never", -1, "skipped") in _tries(db) and ("after", -1, "skipped") in _tries(db)
    adds = sorted(mapped, key=lambda r: r.map_index)
    # the results come back out of order; the downstream task gets them in map index order
    done = _step(scheduler, executor, *(_ok(r, 11 + r.map_index) for r in reversed(adds)))
    [tot] = done
    assert tot.task_id == "total" and tot.upstream == {"add": [11, 12, 13]}
    assert tot.xcom["add"]["return_value"] == [11, 12, 13]


def test_over_max_map_length_the_upstream_fails_and_a_literal_expansion_fails(db: Database) -> None:
    with DAG("big") as dag:

        @task
        def many() -> list[int]:
            return list(range(4))

        @task
        def each(x: int) -> int:
            return x

        each.expand(x=many())
        each.override(task_id="grid").expand(x=[1, 2], y=[1, 2])

    scheduler, executor = _scheduler(db, dag, max_map_length=3)
    with db.engine.begin() as conn:
        trigger_run(conn, "big", {})
    [start] = _step(scheduler, executor)
    assert start.task_id == "many"
    assert _step(scheduler, executor, _ok(start, list(range(4)))) == []
    ti = tables.task_instance
    with db.engine.connect() as conn:
        errors = dict(conn.execute(select(ti.c.task_id, ti.c.error)).all())
    states = {task_id: state for task_id, _, state in _tries(db)}
    assert states == {"many": "failed", "each": "upstream_failed", "grid": "failed"}
    assert "unmappable return value length: 4 > 3" in errors["many"]
    assert "4 map indexes, more than max_map_length=3" in errors["grid"]


def test_max_active_tasks_holds_tries_back_across_runs(db: Database) -> None:
    with DAG("limited", max_active_tasks=2) as dag:

        @task
        def one(x: int) -> int:
            return x

        one.expand(x=[1, 2, 3])

    scheduler, executor = _scheduler(db, dag)
    with db.engine.begin() as conn:
        trigger_run(conn, "limited", {})
        trigger_run(conn, "limited", {})
    sent = _step(scheduler, executor)
    assert len(sent) == 2  # six tries are ready; two may run at once
    assert _step(scheduler, executor) == []  # nothing ended: nothing more
    more = _step(scheduler, executor, _ok(sent[0], 1))
    assert len(more) == 1
    total = 3
    pending = [sent[1], more[0]]
    while pending:
        request = pending.pop(0)
        nxt = _step(scheduler, executor, _ok(request, 1))
        total += len(nxt)
        pending += nxt
        assert len(pending) <= 2
    assert total == 6


def test_dagrun_timeout_fails_the_run_skips_its_tries_and_stops_the_running_one(db: Database) -> None:
    with DAG("slow", dagrun_timeout=timedelta(seconds=30)) as dag:

        @task
        def first() -> None:
            return None

        @task
        def second() -> None:
            return None

        first() >> second()

    scheduler, executor = _scheduler(db, dag)
    with db.engine.begin() as conn:
        run_id = trigger_run(conn, "slow", {})
    [running] = _step(scheduler, executor)
    with db.engine.begin() as conn:
        # the run started 31 seconds ago
        conn.execute(tables.dag_run.update().values(started_at=utcnow() - timedelta(seconds=31)))
    assert _step(scheduler, executor) == []
    assert executor.cancelled == [running.ti_id]
    assert [state for _, _, state in _tries(db)] == ["skipped", "skipped"]
    with db.engine.connect() as conn:
        state = conn.execute(select(tables.dag_run.c.state).where(tables.dag_run.c.run_id == run_id)).scalar()
    assert state == "failed"
    # the stopped try's late result changes nothing
    assert _step(scheduler, executor, _ok(running, None)) == []
    assert [state for _, _, state in _tries(db)] == ["skipped", "skipped"]
