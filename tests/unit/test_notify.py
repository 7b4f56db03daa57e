"""Wake-ups between processes (`herald.notify`): a Unix datagram on SQLite, NOTIFY on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from herald import notify
from herald.config import normalise_database_url
from herald.store.db import make_engine

#: generous: a wake-up arrives in milliseconds, this only bounds a broken test
WAIT = 10.0


def test_one_database_file_has_one_socket_however_its_url_is_spelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    absolute = notify.socket_path(f"sqlite:///{tmp_path}/herald.db")
    assert notify.socket_path("sqlite:///herald.db") == absolute
    assert notify.socket_path(f"sqlite:///{tmp_path}/other.db") != absolute


def test_postgres_urls_are_told_apart_from_the_rest() -> None:
    assert notify.is_postgres("postgresql+psycopg://u@h/db") and notify.is_postgres("postgres://u@h/db")
    assert not notify.is_postgres("sqlite:///x.db")
    assert notify.local_channel("orders") == "local:orders"


def test_a_socket_listener_wakes_only_the_channels_notified(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/herald.db"

    async def scenario() -> None:
        listener = notify.make_listener(url)
        assert isinstance(listener, notify.SocketListener)
        scheduler, workers = listener.event(notify.SCHEDULER), listener.event(notify.WORKERS)
        listener.start()
        try:
            notify.notify(url, notify.SCHEDULER)  # from "another process": through the socket
            await asyncio.wait_for(scheduler.wait(), WAIT)
            assert not workers.is_set()
            listener.fire_all()  # after a lost connection every waiter looks again
            assert workers.is_set()
        finally:
            listener.stop()
        assert not os.path.exists(notify.socket_path(url))

    asyncio.run(scenario())


def test_notifying_nobody_is_harmless(tmp_path: Path) -> None:
    notify.notify(f"sqlite:///{tmp_path}/nobody.db", notify.SCHEDULER)  # no listener: no error


def test_on_sqlite_notify_in_leaves_the_wake_up_to_the_caller(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/herald.db")
    with engine.begin() as conn:
        assert notify.notify_in(conn, notify.SCHEDULER) is False
    engine.dispose()


def test_on_postgres_a_notify_in_a_transaction_arrives_with_its_commit(pg_database: str) -> None:
    url = normalise_database_url(pg_database)
    engine = make_engine(url)

    async def scenario() -> None:
        listener = notify.make_listener(url)
        assert isinstance(listener, notify.PgListener)
        replay = listener.event(notify.REPLAY)
        listener.start()
        try:
            # The listener fires every waiter once connected (anything sent before it listened).
            await asyncio.wait_for(replay.wait(), WAIT)
            replay.clear()

            def commit() -> bool:
                with engine.begin() as conn:
                    return notify.notify_in(conn, notify.REPLAY)

            assert await asyncio.to_thread(commit) is True
            await asyncio.wait_for(replay.wait(), WAIT)
            replay.clear()
            await asyncio.to_thread(notify.notify, url, notify.REPLAY)  # after a commit, from outside
            await asyncio.wait_for(replay.wait(), WAIT)
        finally:
            listener.stop()

    try:
        asyncio.run(scenario())
    finally:
        engine.dispose()


def test_a_recheck_comes_less_often_while_it_finds_nothing_and_soon_again_after_work() -> None:
    recheck = notify.Recheck(first=2.0, longest=30.0)
    waits = [recheck.wait]
    for _ in range(6):
        recheck.found_nothing()
        waits.append(recheck.wait)
    assert waits == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    recheck.reset()  # a wake-up came, or the re-check found work
    assert recheck.wait == 2.0
    steady = notify.Recheck(first=2.0, longest=2.0)  # a waiter whose re-check must stay regular
    steady.found_nothing()
    assert steady.wait == 2.0


def test_waiting_for_a_wake_up_tells_whether_it_came() -> None:
    async def scenario() -> None:
        event = asyncio.Event()
        assert not await notify.wait_for_wake_up(event, 0.01)  # nobody woke it: the re-check is due
        asyncio.get_running_loop().call_soon(event.set)
        assert await notify.wait_for_wake_up(event, WAIT)
        assert await notify.wait_for_wake_up(event, 0)  # set before the wait: no sleep at all

    asyncio.run(scenario())
