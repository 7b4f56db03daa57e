"""The publish socket: replies after the commit, groups what arrives meanwhile; a publisher falls back when it must."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import pytest

from herald.store import local_queue
from herald.store.db import Database
from herald.store.migrate import upgrade
from herald.triggerer import publish_socket
from herald.triggerer.local_queue import local_publish


@pytest.fixture
def url(tmp_path: Path) -> str:
    tmp_path.chmod(0o700)
    return f"sqlite:///{tmp_path}/herald.db"


def one(queue: str, body: bytes) -> local_queue.Publish:
    return local_queue.Publish(queue, [body], {"h": "v"}, local_queue.new_keys(1))


def test_publishes_are_committed_before_the_reply_and_grouped_while_a_commit_waits(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    woken: list[set[str]] = []
    # Which publisher threads have sent their request and wait for the reply (not a
    # time: on a loaded machine a thread may take seconds to get there).
    waiting: set[int] = set()
    read = publish_socket._read

    def reading(sock: socket.socket, n: int) -> bytes:
        if go.is_set():
            waiting.add(threading.get_ident())
        return read(sock, n)

    monkeypatch.setattr(publish_socket, "_read", reading)
    go = threading.Event()

    async def scenario() -> None:
        db = Database(url)
        await db.run(upgrade, db.engine)
        server = publish_socket.PublishServer(db, woken.append)
        server.start()
        try:
            publish = one("orders", b"first")
            ids = await asyncio.to_thread(publish_socket.send, url, publish)
            assert ids is not None and local_queue.fetch(db.engine, "orders", 0, 10)[0].id == ids[0]
            # Given 20 publishers connected, and Herald's database thread busy with a long
            # write, when they all send, then they wait for it and go in a few
            # transactions - the one that arrived first, and the others together - not 20.
            connected = threading.Barrier(21)
            results: list[list[int] | None] = []

            def publisher(i: int) -> None:
                publish_socket.send(url, one("warm-up", b"%d" % i))  # this thread's connection
                connected.wait(30)
                go.wait(30)
                results.append(publish_socket.send(url, one("orders", b"%d" % i)))

            threads = [threading.Thread(target=publisher, args=(i,)) for i in range(20)]
            for thread in threads:
                thread.start()
            await asyncio.to_thread(connected.wait, 30)
            before = server.commits
            assert db._turns is not None
            db._turns.__enter__()
            go.set()
            for _ in range(600):  # every request sent (in the socket buffers), up to 60 s
                if len(waiting) == 20:
                    break
                await asyncio.sleep(0.1)
            assert len(waiting) == 20
            assert results == []  # nobody answered before the commit
            db._turns.__exit__()
            for thread in threads:
                await asyncio.to_thread(thread.join, 30)
            assert len(results) == 20 and all(r is not None for r in results)
            # Grouped: the one that arrived first, then what waited in the buffers meanwhile
            # (a request read in two pieces may make a third group), never one per publish.
            assert server.commits - before <= 4 and server.messages == 41
            assert local_queue.depth(db.engine, "orders") == 21
            await asyncio.sleep(0.1)
            assert {"orders"} in woken  # the consumers were woken on Herald's loop
        finally:
            await server.stop()
            db.close()

    asyncio.run(scenario())


def test_with_no_herald_listening_a_publisher_writes_the_database_itself(url: str) -> None:
    from herald.config import Settings

    settings = Settings(database_url=url)
    path = publish_socket.publish_socket_path(url)
    assert publish_socket.send(url, one("q", b"x")) is None  # no socket file
    # A Herald killed with SIGKILL leaves its socket file: connection refused.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()
    assert publish_socket.send(url, one("q", b"x")) is None
    ids = local_publish("q", [b"direct"], None, settings)
    from herald.triggerer.local_queue import _engine

    rows = local_queue.fetch(_engine(url), "q", 0, 10)
    assert [(r.id, r.body) for r in rows] == [(ids[0], b"direct")] and rows[0].publish_key


def test_a_publish_sent_again_after_a_lost_reply_is_one_message(url: str) -> None:
    """Herald committed, then died before replying: the publisher's direct write with the same keys adds nothing."""

    async def scenario() -> None:
        db = Database(url)
        await db.run(upgrade, db.engine)
        server = publish_socket.PublishServer(db, lambda queues: None)
        server.start()
        publish = one("orders", b"once")
        try:
            assert await asyncio.to_thread(publish_socket.send, url, publish) is not None
        finally:
            await server.stop()
        await db.run(local_queue.put, db.engine, publish.queue, publish.bodies, publish.headers, publish.keys)
        assert local_queue.depth(db.engine, "orders") == 1
        db.close()

    asyncio.run(scenario())
