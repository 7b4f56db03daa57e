"""One `herald standalone` per test module on SQLite or on a fresh PostgreSQL database."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PG_ADMIN_URL, drop_later, require_service
from tests.e2e.conftest import Herald


def fresh_database(kind: str, home: Path) -> tuple[str, str | None]:
    """A database URL for one Herald: SQLite in `home`, or a new PostgreSQL database (and its name, to drop)."""
    if kind == "sqlite":
        return f"sqlite:///{home}/herald.db", None
    import psycopg

    require_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"herald_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}", name


def drop_database(name: str | None) -> None:
    """Drop a database `fresh_database` made (nothing for SQLite), in the background as every test's."""
    if name is not None:
        drop_later(name)


@contextlib.contextmanager
def standalone(kind: str, tmp_path_factory: pytest.TempPathFactory, dags: str, env: dict[str, str]) -> Iterator[Herald]:
    """A started Herald on `kind` ("sqlite" or "postgres") with one DAG file; stopped (database dropped) after."""
    home = tmp_path_factory.mktemp(f"herald-{kind}")
    url, dropped = fresh_database(kind, home)
    h = Herald(Path(home) / "home", url)
    h.write_dag("dags", dags)
    try:
        h.start(env)
        yield h
    finally:
        if h.proc is not None:
            h.stop()
        drop_database(dropped)


def token(herald: Herald) -> str:
    """A write token of this Herald (made once)."""
    if not hasattr(herald, "token"):
        from herald.commands import tokens
        from herald.config import normalise_database_url
        from herald.store.db import make_engine

        engine = make_engine(normalise_database_url(herald.env["HERALD_DATABASE_URL"]), pool_size=0)
        try:
            herald.token, _ = tokens.create(engine, "write", f"test-{uuid.uuid4().hex[:6]}")  # type: ignore[attr-defined]
        finally:
            engine.dispose()
    found: str = herald.token  # type: ignore[attr-defined]
    return found


def api(herald: Herald, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """Call the API with a write token; returns (status, parsed JSON or the error text)."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(
        f"http://127.0.0.1:{herald.port}/api/v1{path}",
        data=data,
        method="GET" if body is None else "POST",
        headers={"Authorization": f"Bearer {token(herald)}", "Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        try:
            return exc.code, json.loads(text)
        except ValueError:
            return exc.code, text


CANARY_DAG = """
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

canary = Asset("canary", watchers=[AssetWatcher("canary_local", MessageQueueTrigger("local://canary"))])


@dag(schedule=[canary])
def canary_dag():
    @task
    def ping(triggering_asset_events):
        return triggering_asset_events[canary][0].extra["payload"]

    ping()


canary_dag()
"""


def canary_keeps_running(herald: Herald) -> None:
    """A new canary message becomes a successful run of the unrelated canary DAG."""
    marker = uuid.uuid4().hex
    herald.publish("canary", {"marker": marker})

    def ran() -> bool:
        for run in herald.runs("canary_dag", "success"):
            detail = herald.cli_json("runs", "show", run["run_id"])
            if any(t["result"] == {"marker": marker} for t in detail["tasks"]):
                return True
        return False

    herald.wait_for(ran, 60, "the canary DAG's run")
