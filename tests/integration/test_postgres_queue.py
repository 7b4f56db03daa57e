"""The delivery contract on a PostgreSQL queue table, and what is special to it.

SKIP LOCKED between competing triggers, rows coming back when a claim is
rolled back, LISTEN/NOTIFY waking a waiting receive, and a killed connection.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import psycopg
import pytest
from psycopg import sql

from herald.publishing import aclose_publishers, apublish
from herald.triggers.base import BaseEventTrigger, Message
from herald.triggers.postgres import PostgresTrigger
from tests.conftest import require_service
from tests.integration.contract import BrokerCase, ContractSuite, run

QUEUE_DB = "postgresql://postgres@127.0.0.1:5432/test"


async def _drop(table: str) -> None:
    await aclose_publishers()
    async with await psycopg.AsyncConnection.connect(QUEUE_DB, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


async def _rows(table: str) -> int:
    async with await psycopg.AsyncConnection.connect(QUEUE_DB, autocommit=True) as conn:
        cursor = await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0])


async def _waiting_for_notify(trigger: PostgresTrigger, timeout: float = 30.0) -> None:
    """Wait until the trigger's empty claim was rolled back: its connection then only waits for a notification."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with await psycopg.AsyncConnection.connect(QUEUE_DB, autocommit=True) as conn:
        while True:
            cursor = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state = 'idle' "
                "AND query = 'ROLLBACK'",
                (trigger.application_name,),
            )
            row = await cursor.fetchone()
            if row is not None and row[0] > 0:
                return
            if loop.time() > deadline:
                raise AssertionError(f"the trigger of {trigger.table} never waited for a notification")
            await asyncio.sleep(0.02)  # the interval between two looks, not a wait for the state


class PostgresCase(BrokerCase):
    broker: ClassVar[str] = "postgres"
    options: ClassVar[dict[str, Any]] = {"wait_seconds": 1}

    #: why the contract's broker restart test does not apply
    no_restart: ClassVar[str] = (
        "the machine's one PostgreSQL holds the metadata databases too; "
        "the server ending the connection is the reconnect test"
    )

    def require(self) -> None:
        require_service("PostgreSQL", "127.0.0.1", 5432)

    async def kill_connection(self, trigger: BaseEventTrigger, during: Callable[[], Awaitable[None]]) -> None:
        assert isinstance(trigger, PostgresTrigger)
        async with await psycopg.AsyncConnection.connect(QUEUE_DB, autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                (trigger.application_name,),
            )
            assert len(await cursor.fetchall()) >= 1, "the trigger had no connection to end"
        await during()

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
            await apublish(url, str(n).encode(), {"n": str(n)})
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
        await _waiting_for_notify(trigger)  # its claim found nothing: only a NOTIFY can end the wait now
        await apublish(url, b"wake up")
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
            await apublish(url, str(n).encode())
        assert await trigger.lag() == 3
        batch = await trigger.receive(2)
        await trigger.ack(batch)
        assert await trigger.lag() == 1
        await trigger.close()
        await _drop(table)

    run(scenario)


def test_describe_masks_password_and_keeps_libpq_options() -> None:
    trigger = PostgresTrigger.from_url("postgres://app:s3cret@db:5432/q?table=jobs&sslmode=require&wait_seconds=2")
    described = trigger.describe()
    assert "s3cret" not in str(described)
    assert (described["table"], described["channel"], described["wait_seconds"]) == ("jobs", "jobs", 2.0)
    assert trigger.dsn == "postgresql://app:s3cret@db:5432/q?sslmode=require"
