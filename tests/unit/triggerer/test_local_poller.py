"""One fallback query for every idle local:// queue of a triggerer: it wakes the queues that hold messages."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from herald import notify
from herald.config import normalise_database_url
from herald.store import local_queue
from herald.store.db import Database
from herald.store.migrate import upgrade
from herald.triggerer.local_queue import LocalQueuePoller, LocalQueueSource
from herald.triggers.local import LocalQueueTrigger


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    found = Database(normalise_database_url(database_url))
    upgrade(found.engine)
    yield found
    found.close()


def store_quietly(db: Database, queue: str, body: bytes) -> None:
    """A message stored with no wake-up (as if the publisher's wake-up was lost)."""
    publish = local_queue.Publish(queue, [body], {}, local_queue.new_keys(1))
    with db.engine.begin() as conn:
        local_queue.put_in(conn, [publish])


def test_one_query_wakes_only_the_queues_that_hold_messages(db: Database) -> None:
    async def scenario() -> None:
        poller = LocalQueuePoller(db)
        events = {q: asyncio.Event() for q in ("q1", "q2", "q3")}
        for queue, event in events.items():
            poller.idle(queue, event)
        store_quietly(db, "q2", b"x")
        assert await poller.poll_once() == {"q2"}
        assert poller.polls == 1  # one query for the three queues
        assert [q for q, e in events.items() if e.is_set()] == ["q2"]
        poller.busy("q2", events["q2"])
        poller.busy("q1", events["q1"])
        poller.busy("q3", events["q3"])
        assert await poller.poll_once() == set()
        assert poller.polls == 1  # nothing idle: no query at all

    asyncio.run(scenario())


def test_a_source_whose_wake_up_was_lost_gets_its_message_from_the_shared_poll(db: Database) -> None:
    async def scenario() -> None:
        poller = LocalQueuePoller(db, interval=0.05)
        listener = notify.Listener(db.url)  # hears nothing: every wake-up is lost
        claims = None if db.is_sqlite else asyncio.Semaphore(1)
        sources = [
            LocalQueueSource(LocalQueueTrigger(f"local://{q}"), db, listener, claims, poller) for q in ("idle", "busy")
        ]
        for source in sources:
            await source.open()
        waiting = [asyncio.ensure_future(source.receive(10)) for source in sources]
        polling = asyncio.ensure_future(poller.run())
        try:
            await asyncio.sleep(0.2)
            assert not any(w.done() for w in waiting)
            store_quietly(db, "busy", b"hello")
            got = await asyncio.wait_for(waiting[1], 30)
            assert [m.body for m in got] == [b"hello"]
            assert not waiting[0].done()  # the other queue's source was not woken
            assert await sources[1].lag() == 1 and await sources[0].lag() == 0
        finally:
            polling.cancel()
            waiting[0].cancel()
            for source in sources:
                await source.close()

    asyncio.run(scenario())
