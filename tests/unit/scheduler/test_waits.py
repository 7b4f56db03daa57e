"""Deferred tries, pass by pass: a task waits for an event matching its run's payload, without a worker.

The task itself runs in `run_task` (as a worker runs it), so the match is rendered from
the run's own payload; the passes are driven by hand on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from herald.config import normalise_database_url
from herald.executors.records import TaskResult
from herald.executors.worker import run_task
from herald.loader import load_folder
from herald.scheduler.scheduler import Scheduler
from herald.sdk.dag import DAG
from herald.store import tables as t
from herald.store import waits as store_waits
from herald.store.db import Database
from herald.store.events import NewEvent, insert_events
from herald.store.migrate import upgrade
from herald.store.states import RunState, TryState
from herald.store.sync import sync_bag
from herald.store.types import utcnow
from tests.unit.scheduler.test_passes import Recorder

DAGS = """
from datetime import timedelta
from herald import Asset, WaitForAssetEvent, TimeDeltaSensorAsync, dag, task, wait_for_asset_event

orders = Asset("orders")
approvals = Asset("approvals")

@dag(schedule=[orders])
def approve():
    @task
    def order(triggering_asset_events):
        return triggering_asset_events[orders][0].payload["order_id"]

    wait = WaitForAssetEvent(
        task_id="approval",
        asset=approvals,
        match="order_id == '{{{{ ti.xcom_pull(task_ids='order') }}}}' && approved",
        timeout={timeout},
        retries={retries},
        retry_delay=0,
    )

    @task
    def ship(approval):
        return approval["payload"]["by"]

    o = order()
    o >> wait
    ship(wait.output)

approve()

@dag(schedule=None)
def pause():
    TimeDeltaSensorAsync(task_id="nap", delta=timedelta(seconds={nap}))

pause()

@dag(schedule=None)
def flow():
    @task
    def approval(dag_run):
        wait_for_asset_event(approvals, f"order_id == '{{dag_run.conf['order_id']}}'", timeout=60)

    approval()

flow()
"""


@dataclass
class Waits:
    folder: Path
    db: Database
    scheduler: Scheduler
    executor: Recorder
    dags: dict[str, DAG]
    asset_ids: dict[str, int]
    consumers: dict[int, list[str]]

    def emit(self, asset: str, payload: dict[str, Any]) -> None:
        now = utcnow()
        row = NewEvent(self.asset_ids[asset], "test", f"{asset}-{now.timestamp()}-{payload}", {"payload": payload}, now)
        with self.db.engine.begin() as conn:
            insert_events(conn, [row], self.consumers, now)

    def run(self, *results: TaskResult) -> None:
        outcome = self.scheduler._pass(list(results), [])
        self.executor.submit(outcome.requests)

    def work(self) -> list[TaskResult]:
        """Run every handed try as a worker would; returns their results (not applied yet)."""
        handed, self.executor.submitted = self.executor.submitted, []
        return [TaskResult.from_wire(run_task(self.dags, r.to_wire())) for r in handed]

    def settle(self, rounds: int = 6) -> None:
        """Passes with the workers' results, until nothing is handed over."""
        for _ in range(rounds):
            results = self.work()
            self.run(*results)
            if not self.executor.submitted:
                return

    def tries(self) -> list[tuple[str, str, str | None]]:
        ti = t.task_instance
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(ti.c.task_id, ti.c.state, ti.c.error).order_by(ti.c.run_pk, ti.c.id)).all()
        return [(r.task_id, r.state, r.error) for r in rows]

    def state_of(self, task_id: str) -> list[str]:
        return [s for tid, s, _ in self.tries() if tid == task_id]

    def results_of(self, task_id: str) -> list[Any]:
        ti = t.task_instance
        with self.db.engine.connect() as conn:
            return list(
                conn.execute(select(ti.c.result).where(ti.c.task_id == task_id).order_by(ti.c.run_pk)).scalars()
            )

    def restart(self) -> None:
        """A new scheduler on the same database (a restart: nothing kept in memory)."""
        self.scheduler = Scheduler(self.db, self.executor, asyncio.Event())
        self.scheduler.update(self.dags, self.asset_ids, self.consumers)


def _make(tmp_path: Path, database_url: str, timeout: str = "3600", retries: int = 0, nap: float = 3600) -> Waits:
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "approve.py").write_text(textwrap.dedent(DAGS).format(timeout=timeout, retries=retries, nap=nap))
    db = Database(normalise_database_url(database_url))
    upgrade(db.engine)
    bag = load_folder(folder)
    assert not bag.errors, bag.errors
    catalog = sync_bag(db.engine, bag)
    executor = Recorder()
    scheduler = Scheduler(db, executor, asyncio.Event())
    scheduler.update(bag.dags, catalog.asset_ids, catalog.consumers)
    return Waits(folder, db, scheduler, executor, bag.dags, catalog.asset_ids, catalog.consumers)


@pytest.fixture
def waits(tmp_path: Path, database_url: str) -> Iterator[Waits]:
    w = _make(tmp_path, database_url)
    yield w
    w.db.close()


def test_a_waiting_try_holds_no_worker_and_resumes_on_the_matching_event_only(waits: Waits) -> None:
    waits.emit("orders", {"order_id": "A1"})
    waits.emit("orders", {"order_id": "B2"})
    waits.run()
    waits.settle()
    # both runs wait, deferred: nothing is handed to a worker
    assert waits.state_of("approval") == [TryState.DEFERRED, TryState.DEFERRED]
    assert waits.executor.submitted == []
    with waits.db.engine.connect() as conn:
        assert store_waits.count(conn) == 2

    waits.emit("approvals", {"order_id": "A1", "approved": False})  # the right order, not approved
    waits.emit("approvals", {"order_id": "C3", "approved": True})  # another order
    waits.run()
    assert waits.state_of("approval") == [TryState.DEFERRED, TryState.DEFERRED]

    waits.emit("approvals", {"order_id": "B2", "approved": True, "by": "ann"})
    waits.run()
    assert waits.state_of("approval") == [TryState.DEFERRED, TryState.SUCCESS]
    [handed] = waits.executor.submitted
    assert handed.task_id == "ship" and handed.upstream["approval"]["payload"]["by"] == "ann"
    waits.settle()
    assert waits.state_of("ship") == [TryState.NONE, TryState.SUCCESS]
    assert waits.results_of("ship")[1] == "ann"
    with waits.db.engine.connect() as conn:
        assert store_waits.count(conn) == 1


def test_an_event_that_came_after_the_run_started_but_before_the_wait_counts(waits: Waits) -> None:
    waits.emit("approvals", {"order_id": "A1", "approved": True, "by": "early-before-the-run"})
    waits.emit("orders", {"order_id": "A1"})
    waits.run()
    [order] = waits.work()  # the order task ends: the approval task is next
    waits.emit("approvals", {"order_id": "A1", "approved": True, "by": "bob"})  # before the task defers
    waits.run(order)
    waits.settle()
    assert waits.state_of("approval") == [TryState.SUCCESS]
    assert waits.results_of("ship") == ["bob"]


def test_a_restarted_scheduler_resumes_the_wait_from_the_database(waits: Waits) -> None:
    waits.emit("orders", {"order_id": "A1"})
    waits.run()
    waits.settle()
    assert waits.state_of("approval") == [TryState.DEFERRED]
    waits.restart()
    waits.emit("approvals", {"order_id": "A1", "approved": True, "by": "cy"})
    waits.run()
    waits.settle()
    assert waits.results_of("ship") == ["cy"]
    with waits.db.engine.connect() as conn:
        [(state,)] = conn.execute(select(t.dag_run.c.state)).all()
    assert state == RunState.SUCCESS


@pytest.mark.parametrize(("retries", "expected"), [(0, TryState.FAILED), (1, TryState.QUEUED)])
def test_the_timeout_fails_the_try_with_its_reason_or_retries_it(
    tmp_path: Path, database_url: str, retries: int, expected: str
) -> None:
    w = _make(tmp_path, database_url, timeout="0", retries=retries)
    try:
        w.emit("orders", {"order_id": "A1"})
        w.run()
        w.settle(2)
        w.run()  # the deadline (now + 0 s) has passed
        [(_, state, error)] = [x for x in w.tries() if x[0] == "approval"]
        assert state == expected  # with a retry left (delay 0), it is queued again at once
        assert error == (
            "timed out after 0s waiting for an event of asset 'approvals' matching `order_id == 'A1' && approved`"
        )
        if retries:
            [again] = w.executor.submitted
            assert (again.task_id, again.try_number) == ("approval", 2)
            w.run(*w.work())  # the second try waits again, with a fresh deadline
            w.run()
            assert w.state_of("approval") == [TryState.FAILED]
    finally:
        w.db.close()


def test_a_deferrable_time_sensor_waits_without_a_worker_until_its_time(tmp_path: Path, database_url: str) -> None:
    w = _make(tmp_path, database_url, nap=3600)
    try:
        with w.db.engine.begin() as conn:
            from herald.store import runs as store_runs
            from herald.store.states import RunType

            store_runs.create_runs(conn, ["pause"], RunType.MANUAL, utcnow())
        w.run()
        w.settle(2)
        assert w.state_of("nap") == [TryState.DEFERRED]
        outcome = w.scheduler._pass([], [])
        assert outcome.next_at is not None and (outcome.next_at - utcnow()).total_seconds() > 3000
        with w.db.engine.begin() as conn:  # an hour later
            conn.execute(t.task_wait.update().values(deadline=utcnow()))
        w.run()
        assert w.state_of("nap") == [TryState.SUCCESS]
    finally:
        w.db.close()


def test_a_task_that_defers_with_an_invalid_expression_fails_saying_why(waits: Waits) -> None:
    waits.emit("orders", {"order_id": "A1"})
    waits.run()
    [order] = waits.work()
    waits.run(order)
    [request] = waits.executor.submitted
    waits.executor.submitted = []
    broken = TaskResult(request.ti_id, TryState.DEFERRED, defer={"asset": "approvals", "match": "=="})
    waits.run(broken)
    [(_, state, error)] = [x for x in waits.tries() if x[0] == "approval"]
    assert state == TryState.FAILED
    assert error is not None and "not a valid JMESPath expression" in error


def test_a_wait_whose_expression_has_no_equality_is_tried_on_every_event(waits: Waits) -> None:
    waits.emit("orders", {"order_id": "A1"})
    waits.run()
    [order] = waits.work()
    waits.run(order)
    [request] = waits.executor.submitted
    waits.executor.submitted = []
    urgent = {"asset": "approvals", "match": "contains(tags, 'urgent')"}
    waits.run(TaskResult(request.ti_id, TryState.DEFERRED, defer=urgent))
    assert waits.state_of("approval") == [TryState.DEFERRED]
    waits.emit("approvals", {"tags": ["late"]})
    waits.run()
    assert waits.state_of("approval") == [TryState.DEFERRED]
    waits.emit("approvals", {"tags": ["urgent"], "order_id": "anything", "by": "dee"})
    waits.run()
    waits.settle()
    assert waits.results_of("ship") == ["dee"]


def test_a_deferred_try_of_a_run_that_times_out_is_skipped_and_waits_no_more(waits: Waits) -> None:
    from herald.store import tries as store_tries

    waits.emit("orders", {"order_id": "A1"})
    waits.run()
    waits.settle()
    assert waits.state_of("approval") == [TryState.DEFERRED]
    with waits.db.engine.begin() as conn:
        [run_pk] = conn.execute(select(t.dag_run.c.id)).scalars().all()
        handed = store_tries.skip_unfinished(conn, [run_pk], utcnow(), "the run timed out (dagrun_timeout)")
        assert handed == []  # nothing for an executor to stop: no worker holds it
        assert store_waits.count(conn) == 0
    assert waits.state_of("approval") == [TryState.SKIPPED]


def test_a_taskflow_task_waits_with_wait_for_asset_event(waits: Waits) -> None:
    from herald.store import runs as store_runs

    with waits.db.engine.begin() as conn:
        store_runs.trigger_run(conn, "flow", {"order_id": "T1"})
    waits.run()
    waits.settle()
    assert waits.state_of("approval") == [TryState.DEFERRED]
    waits.emit("approvals", {"order_id": "T1", "by": "eve"})
    waits.run()
    [event] = waits.results_of("approval")
    assert event["payload"] == {"order_id": "T1", "by": "eve"} and event["asset"]["name"] == "approvals"


def test_a_deferral_travels_through_the_result_table_of_remote_workers(waits: Waits) -> None:
    from herald.store import tries as store_tries

    defer = {"asset": "approvals", "match": "order_id == 'A1'", "until": None, "timeout": 60.0, "soft_fail": False}
    sent = TaskResult(7, TryState.DEFERRED, try_number=1, defer=defer)
    with waits.db.engine.begin() as conn:
        store_tries.store_results(conn, [sent.to_wire()])
    with waits.db.engine.begin() as conn:
        [row] = store_tries.claim_results(conn, 10)
    back = TaskResult.from_wire(row)
    assert (back.state, back.defer) == (TryState.DEFERRED, defer)
