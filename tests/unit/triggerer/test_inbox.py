"""The publish inbox while Herald runs: committed before the publish returns, moved once, left for the next start."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from herald.store import local_queue
from herald.store.db import Database
from herald.store.inbox import Inbox, inbox_path
from herald.store.migrate import upgrade
from herald.triggerer import inbox
from herald.triggerer.local_queue import _engine, local_publish


@pytest.fixture
def url(tmp_path: Path) -> str:
    tmp_path.chmod(0o700)
    return f"sqlite:///{tmp_path}/herald.db"


def one(queue: str, body: bytes) -> local_queue.Publish:
    return local_queue.Publish(queue, [body], {"h": "v"}, local_queue.new_keys(1))


def in_inbox(url: str) -> list[bytes]:
    path = inbox_path(url)
    assert path is not None
    reader = Inbox.open(path)
    assert reader is not None
    try:
        return [r.body for r in reader.take(0, 100_000)]
    finally:
        reader.close()


def bodies(db: Database, queue: str) -> list[bytes]:
    return [r.body for r in local_queue.fetch(db.engine, queue, 0, 100_000)]


async def until(check: Callable[[], bool], what: str) -> None:
    for _ in range(600):  # up to 60 s on a loaded machine
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def with_herald(url: str, scenario: Callable[[Database], Awaitable[None]]) -> None:
    async def run() -> None:
        db = Database(url)
        await db.run(upgrade, db.engine)
        try:
            await scenario(db)
        finally:
            db.close()

    asyncio.run(run())


def test_a_publish_returns_once_committed_to_the_inbox_and_herald_moves_it_once(url: str) -> None:
    woken: list[set[str]] = []

    async def scenario(db: Database) -> None:
        # A poll period longer than the test: what moves the message is the publisher's wake-up.
        mover = inbox.InboxMover(db, woken.append, poll=3600)
        mover.start()
        try:
            publish = one("orders", b"first")
            assert await asyncio.to_thread(inbox.publish, url, publish)
            assert b"first" in in_inbox(url) + bodies(db, "orders")  # committed before the return
            await until(lambda: bodies(db, "orders") == [b"first"], "the move")
            assert local_queue.fetch(db.engine, "orders", 0, 1)[0].publish_key == publish.keys[0]
            await until(lambda: {"orders"} in woken, "the consumers' wake-up on Herald's loop")
            # Several threads at once, each on its own connection: every message once.
            threads = [
                threading.Thread(
                    target=lambda i=i: [inbox.publish(url, one("orders", b"%d-%d" % (i, k))) for k in range(50)]
                )
                for i in range(4)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                await asyncio.to_thread(thread.join, 60)
            await until(lambda: len(bodies(db, "orders")) == 201, "200 more moved")
            assert sorted(bodies(db, "orders")) == sorted(
                [b"first"] + [b"%d-%d" % (i, k) for i in range(4) for k in range(50)]
            )
            assert mover.messages == 201 and mover.moves <= 201
        finally:
            await mover.stop()
        assert in_inbox(url) == []  # moved rows are dropped once Herald stops (or idles)

    with_herald(url, scenario)


def test_a_herald_killed_before_dropping_moved_rows_does_not_move_them_again(url: str) -> None:
    """The move's mark commits with the rows: the next Herald starts above it."""

    async def scenario(db: Database) -> None:
        path = inbox_path(url)
        assert path is not None
        herald = Inbox.create(path)
        with herald.locked():
            herald.put(local_queue.Publish("orders", [b"1", b"2"], {}, local_queue.new_keys(2)))
            herald.put(one("orders", b"3"))
        moved = herald.take(0, 2)
        local_queue.move_in(db.engine, herald.identity, moved)  # the killed Herald's last move: 1 and 2
        herald.close()
        mover = inbox.InboxMover(db, lambda queues: None, poll=3600)
        mover.start()  # moves what is left at once: 3 only
        try:
            # the count follows the commit (the rows are visible a moment before it is added up)
            await until(lambda: len(bodies(db, "orders")) >= 3 and mover.messages >= 1, "the move at start")
            assert bodies(db, "orders") == [b"1", b"2", b"3"] and mover.messages == 1
        finally:
            await mover.stop()

    with_herald(url, scenario)


def test_with_no_herald_listening_a_publisher_writes_the_database_itself(url: str) -> None:
    from herald.config import Settings

    settings = Settings(database_url=url)
    assert not inbox.publish(url, one("q", b"x"))  # no socket file
    # A Herald killed with SIGKILL leaves its socket file: connection refused.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(inbox.inbox_socket_path(url))
    stale.close()
    assert not inbox.publish(url, one("q", b"x"))
    keys = local_publish("q", [b"direct"], None, settings)
    rows = local_queue.fetch(_engine(url), "q", 0, 10)
    assert [(r.body, r.publish_key) for r in rows] == [(b"direct", keys[0])]


def test_a_stopping_herald_moves_every_publish_that_saw_it_running(url: str) -> None:
    """Publishers keep publishing while Herald stops: each message ends in the queue once, none in the inbox."""
    stop = threading.Event()
    through: list[bool] = []

    def publisher(i: int) -> None:
        k = 0
        while not stop.is_set() or k < 20:
            keys = local_queue.new_keys(1)
            publish = local_queue.Publish("orders", [b"%d-%d" % (i, k)], {}, keys)
            sent = inbox.publish(url, publish)
            if not sent:  # as local_publish does
                local_queue.put(_engine(url), "orders", publish.bodies, publish.headers, keys)
            through.append(sent)
            k += 1

    async def scenario(db: Database) -> None:
        mover = inbox.InboxMover(db, lambda queues: None, poll=3600)
        mover.start()
        threads = [threading.Thread(target=publisher, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        await until(lambda: mover.messages >= 30, "publishes through the inbox")
        await mover.stop()
        stop.set()
        for thread in threads:
            await asyncio.to_thread(thread.join, 60)
        assert in_inbox(url) == []  # the last move took every commit made while Herald ran
        stored = bodies(db, "orders")
        assert len(stored) == len(set(stored)) == len(through) and any(through)
        assert not await asyncio.to_thread(inbox.publish, url, one("orders", b"late"))  # after the stop: direct

    with_herald(url, scenario)


def test_a_publisher_reconnects_to_a_restarted_herald(url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    one_thread = ThreadPoolExecutor(1)  # one publisher thread: its kept connection is the one that ends

    async def send(body: bytes) -> bool:
        return await asyncio.get_running_loop().run_in_executor(one_thread, inbox.publish, url, one("orders", body))

    async def scenario(db: Database) -> None:
        first = inbox.InboxMover(db, lambda queues: None, poll=3600)
        first.start()
        assert await send(b"1")
        await first.stop()
        second = inbox.InboxMover(db, lambda queues: None, poll=3600)
        second.start()
        try:
            assert await send(b"2")  # the kept connection to the first had ended: a new one
            assert await send(b"3")  # kept
            await until(lambda: second.messages == 2, "the moves")
        finally:
            await second.stop()
        assert not await send(b"4")  # nobody listens now: the caller writes the database
        assert bodies(db, "orders") == [b"1", b"2", b"3"]

    try:
        with_herald(url, scenario)
    finally:
        one_thread.shutdown()
