"""The delivery contract on a PostgreSQL queue table, and what is special to it.

SKIP LOCKED between competing triggers, rows coming back when a claim is
rolled back, LISTEN/NOTIFY waking a waiting receive, and a killed connection.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, ClassVar

import psycopg
import pytest
from psycopg import sql

from herald.triggers import postgres as pg_trigger
from herald.triggers.base import Message
from herald.triggers.postgres import PostgresTrigger
from tests.conftest import require_service
from tests.integration.contract import BrokerCase, ContractSuite, run
from tests.integration.harness import TriggererHarness

QUEUE_DB = "postgresql://postgres@127.0.0.1:5432/test"


async def _drop(table: str) -> None:
    await pg_trigger.close_publishers()
    async with await psycopg.AsyncConnection.connect(QUEUE_DB, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


async def _rows(table: str) -> int:
    async with await psycopg.AsyncConnection.connect(QUEUE_DB, autocommit=True) as conn:
        cursor = await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0])


class PostgresCase(BrokerCase):
    broker: ClassVar[str] = "postgres"
    options: ClassVar[dict[str, Any]] = {"wait_seconds": 1}

    def require(self) -> None:
        require_service("PostgreSQL", "127.0.0.1", 5432)

    def url(self, name: str) -> str:
        return f"{QUEUE_DB}?table={name.replace('-', '_')}"

    async def cleanup(self, url: str) -> None:
        await _drop(PostgresTrigger.from_url(url).table)


class TestPostgresQueueContract(ContractSuite):
    case = PostgresCase()


@pytest.fixture
def table() -> str:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return f"herald_{uuid.uuid4().hex[:10]}"


async def _receive(trigger: PostgresTrigger, count: int, attempts: int = 20) -> list[Message]:
    got: list[Message] = []
    for _ in range(attempts):
        got += await trigger.receive(count - len(got))
        if len(got) >= count:
            break
    return got


def test_competing_triggers_claim_different_rows_and_a_rollback_returns_them(table: str) -> None:
    url = f"{QUEUE_DB}?table={table}&wait_seconds=0.5"

    async def scenario() -> None:
        a, b = PostgresTrigger.from_url(url), PostgresTrigger.from_url(url)
        await a.open()
        await b.open()
        for n in range(4):
            await pg_trigger.publish(url, str(n).encode(), {"n": str(n)})
        # Given trigger a holding a claim on two rows
        held = await a.receive(2)
        assert [m.body for m in held] == [b"0", b"1"]
        assert held[0].headers == {"n": "0"} and held[0].metadata["table"] == table
        # Then trigger b gets only the others (SKIP LOCKED), and deletes them on ack
        others = await b.receive(10)
        assert [m.body for m in others] == [b"2", b"3"]
        await b.ack(others)
        assert await b.receive(10) == []
        # When a dies before its ack, its claim is rolled back: the rows come back, same keys
        await a.close()
        again = await _receive(b, 2)
        assert [m.dedupe_key for m in again] == [m.dedupe_key for m in held]
        await b.ack(again)
        assert await _rows(table) == 0
        await b.close()
        await _drop(table)

    run(scenario)


def test_notify_wakes_a_waiting_receive(table: str) -> None:
    # The fallback wait is far longer than the test allows: only the NOTIFY can end it.
    url = f"{QUEUE_DB}?table={table}&wait_seconds=600"

    async def scenario() -> None:
        trigger = PostgresTrigger.from_url(url)
        await trigger.open()
        waiting = asyncio.create_task(trigger.receive(10))
        await asyncio.sleep(0.2)
        await pg_trigger.publish(url, b"wake up")
        got = await asyncio.wait_for(waiting, 60)
        assert [m.body for m in got] == [b"wake up"]
        await trigger.ack(got)
        await trigger.close()
        await _drop(table)

    run(scenario)


def test_lag_counts_rows(table: str) -> None:
    url = f"{QUEUE_DB}?table={table}&wait_seconds=0.5"

    async def scenario() -> None:
        trigger = PostgresTrigger.from_url(url)
        await trigger.open()
        for n in range(3):
            await pg_trigger.publish(url, str(n).encode())
        assert await trigger.lag() == 3
        batch = await trigger.receive(2)
        await trigger.ack(batch)
        assert await trigger.lag() == 1
        await trigger.close()
        await _drop(table)

    run(scenario)


def test_watcher_resumes_after_its_connection_is_terminated(tmp_path: Any, table: str) -> None:
    url = f"{QUEUE_DB}?table={table}&wait_seconds=1"
    harness = TriggererHarness(f"sqlite:///{tmp_path}/herald.db")
    trigger = PostgresTrigger.from_url(url)

    async def terminate() -> int:
        async with await psycopg.AsyncConnection.connect(QUEUE_DB, autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                (trigger.application_name,),
            )
            return len(await cursor.fetchall())

    async def scenario() -> None:
        await harness.start(("readings", trigger))
        await pg_trigger.publish(url, b'{"n": 1}')
        await harness.wait_events(1)
        # When the server ends the trigger's connection (found by its application_name)
        assert await terminate() == 1
        for n in range(2, 6):
            await pg_trigger.publish(url, f'{{"n": {n}}}'.encode())
        # Then the watcher reconnects, records the error, and loses nothing
        await harness.wait_events(5, timeout=60)
        await harness.wait_for(lambda: harness.watchers()[0]["state"] == "running", what="state running")
        await harness.settle(0.5)
        await harness.stop()
        assert sorted(e["payload"]["n"] for e in harness.events()) == [1, 2, 3, 4, 5]
        assert harness.watchers()[0]["last_error"]
        assert await _rows(table) == 0
        await _drop(table)

    try:
        run(scenario)
    finally:
        harness.close()


def test_describe_masks_password_and_keeps_libpq_options() -> None:
    trigger = PostgresTrigger.from_url("postgres://app:s3cret@db:5432/q?table=jobs&sslmode=require&wait_seconds=2")
    described = trigger.describe()
    assert "s3cret" not in str(described)
    assert (described["table"], described["channel"], described["wait_seconds"]) == ("jobs", "jobs", 2.0)
    assert trigger.dsn == "postgresql://app:s3cret@db:5432/q?sslmode=require"
