"""What the DAG sync checks before it stores (SQLite and PostgreSQL): watcher names, masked errors and triggers."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from herald.loader import load_folder
from herald.store import queries
from herald.store import tables as t
from herald.store.sync import sync_bag
from herald.store.variables import set_variable

ORDERS_DAG = """
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

orders = Asset("orders", watchers=[AssetWatcher("{watcher}", MessageQueueTrigger("local://{queue}"))])

@dag(dag_id="{dag_id}", schedule=[orders])
def _d():
    @task
    def t():
        return 1
    t()

_d()
"""


def write(folder: Path, name: str, text: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(text))
    return str(path.resolve())


def watchers_of(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(select(t.watcher.c.name, t.watcher.c.trigger).where(t.watcher.c.is_active)).all()
    return sorted((r.name, r.trigger["url"]) for r in rows)


def errors_of(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {e["fileloc"]: e["error"] for e in queries.list_import_errors(conn, 100)}


def test_two_watchers_of_one_name_on_one_asset_are_an_import_error_naming_both_files(
    engine: Engine, tmp_path: Path
) -> None:
    dags = tmp_path / "dags"
    first = write(dags, "a_first", ORDERS_DAG.format(watcher="w", queue="sync_q1", dag_id="first"))
    second = write(dags, "b_second", ORDERS_DAG.format(watcher="w", queue="sync_q2", dag_id="second"))
    unrelated = write(dags, "c_other", ORDERS_DAG.format(watcher="w2", queue="sync_q3", dag_id="other"))
    bag = load_folder(dags)
    catalog = sync_bag(engine, bag)
    errors = errors_of(engine)
    assert list(errors) == [second]
    assert first in errors[second] and second in errors[second] and "'w'" in errors[second]
    assert "'first'" in errors[second] and "'second'" in errors[second]
    # the first DAG and an unrelated one keep running; the refused file's DAG is left out
    assert sorted(bag.dags) == ["first", "other"]
    assert watchers_of(engine) == [("w", "local://sync_q1"), ("w2", "local://sync_q3")]
    assert sorted(s.name for s in catalog.watchers) == ["w", "w2"]
    assert unrelated not in errors


def test_two_dags_of_one_file_with_clashing_watchers_are_named_and_a_shared_watcher_is_no_clash(
    engine: Engine, tmp_path: Path
) -> None:
    dags = tmp_path / "dags"
    helper = f"_shared_{uuid.uuid4().hex[:8]}"
    write(
        dags,
        helper,
        """
        from herald import Asset, AssetWatcher, MessageQueueTrigger
        orders = Asset("orders", watchers=[AssetWatcher("w", MessageQueueTrigger("local://sync_shared"))])
        """,
    )
    for name in ("shared_a", "shared_b"):
        write(
            dags,
            name,
            f"""
            from herald import dag, task
            from {helper} import orders

            @dag(dag_id="{name}", schedule=[orders])
            def _d():
                @task
                def t():
                    return 1
                t()

            _d()
            """,
        )
    both = write(
        dags,
        "z_both",
        ORDERS_DAG.format(watcher="x", queue="sync_b1", dag_id="one")
        + ORDERS_DAG.format(watcher="x", queue="sync_b2", dag_id="two"),
    )
    bag = load_folder(dags)
    sync_bag(engine, bag)
    errors = errors_of(engine)
    assert list(errors) == [both]
    assert "DAGs 'one' and 'two' in " + both in errors[both]
    assert sorted(bag.dags) == ["shared_a", "shared_b"]
    assert watchers_of(engine) == [("w", "local://sync_shared")]


SECRET_DAG = """
def connect(url, password):
    raise ValueError(f"cannot reach {{url}} as {known}")

connect("redis://me:url-pw2@127.0.0.1:1/0?stream=s&token=url-tk3", password="in-source-pw1")
"""


def test_import_errors_are_stored_masked(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_CONN_SYNC_TEST", "postgres://me:conn-pw4@db:5432/x")
    with engine.begin() as conn:
        set_variable(conn, "warehouse_api_key", "var-key5")
        set_variable(conn, "bucket", "landing-bucket")
    path = write(tmp_path / "dags", "leaky", SECRET_DAG.format(known="conn-pw4 with var-key5 into landing-bucket"))
    bag = load_folder(tmp_path / "dags")
    sync_bag(engine, bag)
    error = errors_of(engine)[path]
    for secret in ("in-source-pw1", "url-pw2", "url-tk3", "conn-pw4", "var-key5"):
        assert secret not in error
        assert secret not in bag.errors[path]  # what the processes log is the masked text too
    assert "redis://me:***@127.0.0.1:1/0?stream=s&token=***" in error and "landing-bucket" in error
    assert 'password="***"' in error and "connect(" in error


LEAKY_TRIGGER_DAG = """
from typing import Any

from herald import Asset, AssetWatcher, dag, task
from herald.sdk.triggers import BaseEventTrigger


class Leaky(BaseEventTrigger):
    async def open(self) -> None: ...
    async def receive(self, max_messages: int) -> list: return []
    async def ack(self, messages: list) -> None: ...
    def describe(self) -> dict[str, Any]:
        return {"url": "mine://me:trig-pw6@h/q?api_key=trig-key7", "secret_key": "trig-sk8", "queue": "q"}


@dag(schedule=[Asset("leaky", watchers=[AssetWatcher("w", Leaky())])])
def leaky():
    @task
    def t():
        return 1
    t()

leaky()
"""


def test_a_user_trigger_describing_its_secrets_is_stored_masked(engine: Engine, tmp_path: Path) -> None:
    write(tmp_path / "dags", "leaky_trigger", LEAKY_TRIGGER_DAG)
    bag = load_folder(tmp_path / "dags")
    assert not bag.errors, bag.errors
    sync_bag(engine, bag)
    with engine.connect() as conn:
        stored = conn.execute(select(t.watcher.c.trigger)).scalar_one()
    assert stored == {"url": "mine://me:***@h/q?api_key=***", "secret_key": "***", "queue": "q"}
