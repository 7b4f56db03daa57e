"""A migrated database (SQLite and PostgreSQL) holding two DAGs, a watcher, and rows written as processes write them."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from herald.config import normalise_database_url
from herald.loader import load_folder
from herald.store import tables as t
from herald.store.db import make_engine
from herald.store.migrate import upgrade
from herald.store.states import RunState, RunType, TryState
from herald.store.sync import sync_bag
from herald.store.types import utcnow

DAGS = """
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

orders = Asset("orders", watchers=[AssetWatcher("orders_local", MessageQueueTrigger("local://unit_orders"))])
audits = Asset("audits")

@dag(schedule=[orders])
def process_orders():
    @task
    def extract():
        return 1

    @task
    def load(x):
        return x

    @task
    def report(x):
        return x

    report(load(extract()))

@dag(schedule=None)
def manual():
    @task(outlets=[audits])
    def only():
        return None
    only()

process_orders()
manual()
"""


@dataclass
class Db:
    """The engine, and helpers that write rows the way the scheduler and the triggerer do."""

    engine: Engine

    def one(self, query: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(query).one()

    def all(self, query: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(query).all())

    def watcher_id(self) -> int:
        return int(self.one(select(t.watcher.c.id))[0])

    def add_run(self, state: RunState, tasks: dict[str, TryState], dag_id: str = "process_orders") -> str:
        now = utcnow()
        run_id = f"test__{uuid.uuid4().hex}"
        with self.engine.begin() as conn:
            pk = conn.execute(
                insert(t.dag_run)
                .values(
                    run_id=run_id,
                    dag_id=dag_id,
                    state=state,
                    run_type=RunType.MANUAL,
                    conf={},
                    queued_at=now,
                    started_at=now,
                    ended_at=None if not state.finished else now,
                )
                .returning(t.dag_run.c.id)
            ).scalar_one()
            for task_id, task_state in tasks.items():
                conn.execute(
                    insert(t.task_instance).values(
                        run_pk=pk,
                        dag_id=dag_id,
                        task_id=task_id,
                        state=task_state,
                        try_number=1 if task_state.finished else 0,
                        max_tries=1,
                        ended_at=now if task_state.finished else None,
                    )
                )
        return run_id

    def add_dead_letter(self, watcher_id: int | None, *, replayed: bool = False) -> int:
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    insert(t.dead_letter)
                    .values(
                        watcher_id=watcher_id,
                        source="local://unit_orders",
                        dedupe_key=uuid.uuid4().hex,
                        body=b"not json {",
                        headers={},
                        message={"broker": "local"},
                        error="ValueError: bad body",
                        created_at=utcnow(),
                        replayed_at=utcnow() if replayed else None,
                    )
                    .returning(t.dead_letter.c.id)
                ).scalar_one()
            )


@pytest.fixture
def db(tmp_path: Path, database_url: str) -> Iterator[Db]:
    """The metadata database on SQLite and on PostgreSQL, with the DAGs above synced."""
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "unit_dags.py").write_text(textwrap.dedent(DAGS))
    engine = make_engine(normalise_database_url(database_url))
    upgrade(engine)
    bag = load_folder(folder)
    assert not bag.errors, bag.errors
    sync_bag(engine, bag)
    yield Db(engine)
    engine.dispose()
