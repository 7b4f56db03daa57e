"""API tests in-process: `create_app` on a migrated database holding two DAGs, a watcher, and tokens."""

from __future__ import annotations

import textwrap
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update

from herald.api.app import create_app
from herald.loader import load_folder
from herald.store import tables as t
from herald.store.db import make_engine
from herald.store.migrate import upgrade
from herald.store.sync import sync_bag
from herald.store.tokens import create_token
from herald.store.types import utcnow

with warnings.catch_warnings():
    # starlette asks for its fork `httpx2`; httpx works the same for these tests.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

DAGS = """
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

orders = Asset("orders", watchers=[AssetWatcher("orders_local", MessageQueueTrigger("local://api_orders"))])
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

    y = load(extract())
    report(y)

@dag(schedule=None, description="run by hand")
def manual():
    @task(outlets=[audits])
    def only():
        return None
    only()

process_orders()
manual()
"""


@dataclass
class Api:
    """A test client with a read token, a write token, and helpers that write rows directly."""

    client: TestClient
    engine: Engine
    read: str
    write: str
    wakes: list[int] = field(default_factory=list)

    def headers(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str, token: str | None = "read", **kw: Any) -> Any:
        return self.client.get(path, headers=self.headers(self._token(token)), **kw)

    def post(self, path: str, token: str | None = "write", headers: dict[str, str] | None = None, **kw: Any) -> Any:
        return self.client.post(path, headers={**self.headers(self._token(token)), **(headers or {})}, **kw)

    def _token(self, token: str | None) -> str | None:
        return {"read": self.read, "write": self.write}.get(token or "", token)

    def ok(self, path: str, **kw: Any) -> Any:
        r = self.get(path, **kw)
        assert r.status_code == 200, r.text
        return r.json()

    # -- rows written the way the scheduler and triggerer write them ----------------------

    def asset_id(self, name: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(t.asset.c.id).where(t.asset.c.name == name)).scalar_one())

    def add_event(self, asset: str = "orders", *, source: str = "watcher:1", when: datetime | None = None) -> int:
        asset_id = self.asset_id(asset)
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    insert(t.asset_event)
                    .values(
                        asset_id=asset_id,
                        source=source,
                        dedupe_key=None,
                        extra={"payload": {"n": 1}, "message": {"broker": "local", "queue": "api_orders"}},
                        timestamp=when or utcnow(),
                    )
                    .returning(t.asset_event.c.id)
                ).scalar_one()
            )

    def add_run(
        self,
        dag_id: str = "process_orders",
        state: str = "success",
        tasks: dict[str, str] | None = None,
        events: list[int] | None = None,
        queued_at: datetime | None = None,
    ) -> str:
        now = queued_at or utcnow()
        run_id = f"test__{now.isoformat()}_{len(self.client.app.state.__dict__)}_{id(now)}"
        with self.engine.begin() as conn:
            pk = conn.execute(
                insert(t.dag_run)
                .values(
                    run_id=run_id,
                    dag_id=dag_id,
                    state=state,
                    run_type="asset_triggered" if events else "manual",
                    conf={},
                    queued_at=now,
                    started_at=now,
                    ended_at=None if state in ("queued", "running") else now + timedelta(seconds=1),
                )
                .returning(t.dag_run.c.id)
            ).scalar_one()
            for event_id in events or []:
                conn.execute(insert(t.dag_run_event).values(run_pk=pk, event_id=event_id))
            for task_id, task_state in (tasks or {}).items():
                conn.execute(
                    insert(t.task_instance).values(
                        run_pk=pk,
                        dag_id=dag_id,
                        task_id=task_id,
                        state=task_state,
                        try_number=1 if task_state in ("success", "failed") else 0,
                        max_tries=1,
                        started_at=now if task_state in ("success", "failed") else None,
                        ended_at=now + timedelta(milliseconds=300) if task_state != "none" else None,
                        log=f"log of {task_id}\n",
                        error="boom" if task_state == "failed" else None,
                    )
                )
        return run_id

    def add_dead_letter(self, body: bytes = b"not json {") -> int:
        with self.engine.begin() as conn:
            wid = conn.execute(select(t.watcher.c.id)).scalar_one()
            conn.execute(
                update(t.watcher).where(t.watcher.c.id == wid).values(dead_lettered=t.watcher.c.dead_lettered + 1)
            )
            return int(
                conn.execute(
                    insert(t.dead_letter)
                    .values(
                        watcher_id=wid,
                        source="local://api_orders",
                        dedupe_key=f"message-{uuid.uuid4().hex}",  # one dead letter per message
                        body=body,
                        headers={},
                        message={"broker": "local"},
                        error="ValueError: bad body",
                        created_at=utcnow(),
                    )
                    .returning(t.dead_letter.c.id)
                ).scalar_one()
            )


def make_api(url: str, folder: Path) -> tuple[Api, Engine]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "api_dags.py").write_text(textwrap.dedent(DAGS))
    engine = make_engine(url)
    upgrade(engine)
    bag = load_folder(folder)
    assert not bag.errors, bag.errors
    sync_bag(engine, bag)
    with engine.begin() as conn:
        read = create_token(conn, "read", "reader")
        write = create_token(conn, "write", "writer")
    wakes: list[int] = []
    app = create_app(engine, wake=lambda: wakes.append(1))
    return Api(TestClient(app, raise_server_exceptions=False), engine, read, write, wakes), engine


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    """The API on a fresh SQLite database."""
    found, engine = make_api(f"sqlite:///{tmp_path}/herald.db", tmp_path / "dags")
    with found.client:
        yield found
    engine.dispose()


@pytest.fixture
def api_any_db(tmp_path: Path, database_url: str) -> Iterator[Api]:
    """The API on SQLite and on PostgreSQL."""
    from herald.config import normalise_database_url

    found, engine = make_api(normalise_database_url(database_url), tmp_path / "dags")
    with found.client:
        yield found
    engine.dispose()
