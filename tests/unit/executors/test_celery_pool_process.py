"""A Celery pool process running one message of several tries (no Celery needed: the process's own code).

It runs in a forked child, as Celery's prefork pool runs it, against SQLite and
PostgreSQL; the test plays the scheduler's part in the database.
"""

from __future__ import annotations

import multiprocessing
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from herald.config import Settings, normalise_database_url
from herald.executors.celery_worker import HAND_ON_AFTER, _PoolProcess
from herald.executors.records import TaskRequest
from herald.loader import load_folder
from herald.scheduler.requests import build_requests
from herald.store import tables as t
from herald.store import tries
from herald.store.db import make_engine
from herald.store.migrate import upgrade
from herald.store.states import RunState, RunType, TryState
from herald.store.sync import sync_bag
from herald.store.types import utcnow

pytestmark = pytest.mark.timeout(120)

DAG = """
import time
from pathlib import Path
from herald import dag, task

MARKS = Path({marks!r})

@dag(schedule=None)
def pair():
    @task
    def slow():
        (MARKS / "slow").touch()
        time.sleep(60)

    @task
    def quick():
        (MARKS / "quick").touch()
        return 1

    slow()
    quick()

pair()
"""


class Cluster:
    """The database, the DAG folder, and the settings a pool process is started with."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.marks = tmp_path / "marks"
        self.marks.mkdir()
        folder = tmp_path / "dags"
        folder.mkdir()
        (folder / "pair.py").write_text(textwrap.dedent(DAG.format(marks=str(self.marks))))
        url = normalise_database_url(database_url)
        # Beats every 0.1 s: a scheduler's decision is seen at once.
        self.settings = Settings(home=tmp_path, dags_folder=folder, database_url=url, heartbeat_timeout=0.4)
        self.engine: Engine = make_engine(url)
        upgrade(self.engine)
        bag = load_folder(folder)
        assert not bag.errors, bag.errors
        sync_bag(self.engine, bag)

    def queued_pair(self) -> dict[str, int]:
        """A run of `pair` with both tries queued (try number 1): task id -> try id."""
        now = utcnow()
        with self.engine.begin() as conn:
            pk = conn.execute(
                insert(t.dag_run)
                .values(
                    run_id=f"test__{uuid.uuid4().hex}",
                    dag_id="pair",
                    state=RunState.RUNNING,
                    run_type=RunType.MANUAL,
                    conf={},
                    queued_at=now,
                    started_at=now,
                )
                .returning(t.dag_run.c.id)
            ).scalar_one()
            found = {
                task_id: int(
                    conn.execute(
                        insert(t.task_instance)
                        .values(
                            run_pk=pk,
                            dag_id="pair",
                            task_id=task_id,
                            state=TryState.SCHEDULED,
                            try_number=0,
                            max_tries=1,
                        )
                        .returning(t.task_instance.c.id)
                    ).scalar_one()
                )
                for task_id in ("slow", "quick")
            }
            tries.queue(conn, list(found.values()))
        return found

    def start(self, items: list[list[Any]], hand_on: bool = False) -> Any:
        """A forked pool process running one message of these tries.

        With `hand_on`, the tries it hands on are written to `marks/handed` (as publishing
        them to Celery would send them on); without, tries wait their turn in the message.
        """
        handed = self.marks / "handed" if hand_on else None
        process = multiprocessing.get_context("fork").Process(
            target=_run, args=(self.settings, items, handed), daemon=True
        )
        process.start()
        return process

    def state(self, ti_id: int) -> tuple[Any, ...]:
        with self.engine.connect() as conn:
            ti = t.task_instance
            return tuple(conn.execute(select(ti.c.state, ti.c.hostname).where(ti.c.id == ti_id)).one())

    def results(self) -> list[int]:
        with self.engine.connect() as conn:
            return [int(i) for i in conn.execute(select(t.task_result.c.ti_id)).scalars()]

    def requeues(self) -> list[int]:
        with self.engine.connect() as conn:
            return [int(i) for i in conn.execute(select(t.task_requeue.c.ti_id)).scalars()]


def _run(settings: Settings, items: list[list[Any]], handed: Path | None) -> None:
    def hand_on(requests: list[TaskRequest]) -> None:
        assert handed is not None
        with handed.open("a") as fh:
            fh.write("".join(f"{r.ti_id} {r.try_number}\n" for r in requests))

    _PoolProcess(settings, "worker:test:1", build_requests, hand_on=hand_on if handed else None).run(items)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def cluster(tmp_path: Path, database_url: str) -> Iterator[Cluster]:
    found = Cluster(tmp_path, database_url)
    yield found
    found.engine.dispose()


def test_a_finished_try_s_result_is_written_while_the_next_try_of_its_message_runs(cluster: Cluster) -> None:
    pair = cluster.queued_pair()
    process = cluster.start([[pair["quick"], 1, None], [pair["slow"], 1, None]])
    try:
        wait_for(lambda: (cluster.marks / "slow").exists(), "the second try to start")
        # Both claimed by this pool process when the message arrived.
        assert cluster.state(pair["slow"])[0] == TryState.RUNNING
        wait_for(lambda: cluster.results() == [pair["quick"]], "the first try's result while the second runs")
        assert process.is_alive()
    finally:
        process.kill()
        process.join()


def test_a_try_ended_by_a_scheduler_while_it_runs_stops_its_process_and_gives_back_the_tries_not_started(
    cluster: Cluster,
) -> None:
    pair = cluster.queued_pair()
    process = cluster.start([[pair["slow"], 1, None], [pair["quick"], 1, None]])
    try:
        wait_for(lambda: (cluster.marks / "slow").exists(), "the first try to start")
        state, host = cluster.state(pair["quick"])
        assert state == TryState.RUNNING and host.startswith("worker:test:1/celery:")  # claimed with the message
        # A scheduler fails the running try as lost (its heartbeats did not get through).
        with cluster.engine.begin() as conn:
            assert tries.requeue_lost(conn, [(pair["slow"], 1, "silent", host)], utcnow()) == [pair["slow"]]
        process.join(30)
        assert process.exitcode == -9  # killed itself, and with it the try
    finally:
        if process.is_alive():
            process.kill()
            process.join()
    # The try it had not started is queued again, not lost: no requeue counted, never run.
    assert cluster.state(pair["quick"]) == (TryState.QUEUED, None)
    assert cluster.requeues() == [pair["slow"]]
    assert not (cluster.marks / "quick").exists()
    assert cluster.results() == []


def test_tries_waiting_behind_a_slow_one_are_handed_on_to_other_workers(cluster: Cluster) -> None:
    pair = cluster.queued_pair()
    process = cluster.start([[pair["slow"], 1, None], [pair["quick"], 1, None]], hand_on=True)
    try:
        wait_for(lambda: (cluster.marks / "slow").exists(), "the first try to start")
        wait_for(lambda: (cluster.marks / "handed").exists(), "the second try handed on", timeout=HAND_ON_AFTER + 30)
        assert (cluster.marks / "handed").read_text() == f"{pair['quick']} 1\n"
        # Back in the queue, for whichever worker takes its new message; not a lost try.
        assert cluster.state(pair["quick"]) == (TryState.QUEUED, None)
        assert cluster.requeues() == []
        assert cluster.state(pair["slow"])[0] == TryState.RUNNING and process.is_alive()
    finally:
        process.kill()
        process.join()
    assert not (cluster.marks / "quick").exists()
