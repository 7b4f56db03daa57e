"""An idle triggerer's periodic work costs the same for one consumer or many (SQLite and PostgreSQL).

Each lease round is one heartbeat transaction and one UPDATE of every lease,
a lag that did not change is not written again, an idle consumer's lag is not
even read, and the backlog is counted again only after a delivery: with a
hundred idle watchers, work per consumer was most of Herald's idle CPU.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from herald.store import events, watchers
from herald.triggerer import triggerer as triggerer_module
from herald.triggerer.local_queue import LocalQueueSource
from herald.triggerer.triggerer import Triggerer
from herald.triggers.base import Message
from herald.triggers.redis_streams import RedisStreamTrigger
from tests.integration.contract import run
from tests.integration.harness import TriggererHarness
from tests.integration.test_local import LocalCase
from tests.integration.test_redis_streams import RedisCase
from tests.integration.test_sharing import pinned


@contextmanager
def writes_to_watchers(engine: Engine) -> Iterator[list[str]]:
    """The statements that write the `watcher` or `triggerer` tables while the block runs."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        text = " ".join(statement.split()).upper()
        if text.startswith(("UPDATE WATCHER", "UPDATE TRIGGERER", "DELETE FROM TRIGGERER", "INSERT INTO TRIGGERER")):
            sent.append(text.split(" SET ")[0].split(" WHERE ")[0])

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_a_lease_round_and_a_lag_round_write_once_for_twelve_consumers(database_url: str) -> None:
    harness = TriggererHarness(database_url)
    case = LocalCase()
    case.attach(harness)

    async def scenario() -> None:
        me: Triggerer = await harness.start(*[(f"idle_{i}", pinned(case, f"idle_{i}")) for i in range(12)])
        assert len(me.leased) == 12
        await harness.wait_for(lambda: {w["state"] for w in harness.watchers()} == {"running"}, what="running")
        with writes_to_watchers(harness.db.engine) as sent:
            await me._lease_round()
        # the heartbeat (its UPDATE and the DELETE of long-dead rows) and one UPDATE of every lease
        assert sent == ["UPDATE TRIGGERER", "DELETE FROM TRIGGERER", "UPDATE WATCHER"]
        assert len(me.leased) == 12

        with writes_to_watchers(harness.db.engine) as sent:
            await me._record_lags()
        assert sent == ["UPDATE WATCHER"]  # twelve new lags (NULL before), in one batch
        with writes_to_watchers(harness.db.engine) as sent:
            await me._record_lags()  # idle, nothing changed: nothing written
        assert sent == []
        assert {w["lag"] for w in harness.watchers()} == {0}
        await harness.stop()

    try:
        run(scenario, harness)
    finally:
        harness.close()


def test_a_lag_taken_over_from_another_triggerer_is_written_again(database_url: str) -> None:
    harness = TriggererHarness(database_url)
    case = LocalCase()
    case.attach(harness)

    async def scenario() -> None:
        me: Triggerer = await harness.start(("lagging", pinned(case, "lagging")))
        await me._record_lags()
        [row] = harness.watchers()
        assert row["lag"] == 0
        # Given a lag round while another triggerer held the lease, which wrote its own figure,
        held, me.leased = me.leased, set()
        await me._record_lags()
        watchers.set_lags(harness.db.engine, {row["id"]: 7})
        me.leased = held
        await me._record_lags()
        # then the holder's next round writes its own again.
        assert harness.watchers()[0]["lag"] == 0
        await harness.stop()

    try:
        run(scenario, harness)
    finally:
        harness.close()


def test_an_idle_consumers_lag_is_read_again_only_once_it_delivers(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    read_lag = LocalQueueSource.lag

    async def counted(self: LocalQueueSource) -> int | None:
        reads.append(self.queue)
        return await read_lag(self)

    monkeypatch.setattr(LocalQueueSource, "lag", counted)
    harness = TriggererHarness(database_url)
    case = LocalCase()
    case.attach(harness)

    async def scenario() -> None:
        me: Triggerer = await harness.start(*[(f"quiet_{i}", pinned(case, f"quiet_{i}")) for i in range(3)])
        await harness.wait_for(lambda: all(c.receiving for c in me.consumers.values()), what="consumers waiting")
        await me._record_lags()
        assert sorted(reads) == ["quiet_0", "quiet_1", "quiet_2"]
        # Nothing delivered since each read 0, each waiting for messages: nothing is read.
        await me._record_lags()
        await me._record_lags()
        assert len(reads) == 3
        # A consumer that delivered is read again at the next round; the idle ones are not.
        await case.publish("local://quiet_1", b'{"n": 1}')
        await harness.wait_for(lambda: len(harness.events()) == 1, what="the event")
        [busy] = [
            c for c in me.consumers.values() if isinstance(c.source, LocalQueueSource) and c.source.queue == "quiet_1"
        ]
        await harness.wait_for(lambda: busy.receiving, what="the consumer waiting again")
        await me._record_lags()
        assert reads[3:] == ["quiet_1"]
        assert {w["lag"] for w in harness.watchers()} == {0}
        await harness.stop()

    try:
        run(scenario, harness)
    finally:
        harness.close()


def test_an_idle_triggerer_counts_the_backlog_again_only_after_a_delivery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts: list[int] = []
    count_backlog = events.backlog

    def counted(engine: Engine, limit: int) -> int:
        counts.append(limit)
        return count_backlog(engine, limit)

    monkeypatch.setattr(events, "backlog", counted)
    empty_polls: list[int] = []
    receive = RedisStreamTrigger.receive

    async def receive_counted(self: RedisStreamTrigger, max_messages: int) -> list[Message]:
        got = await receive(self, max_messages)
        if not got:
            empty_polls.append(1)
        return got

    monkeypatch.setattr(RedisStreamTrigger, "receive", receive_counted)
    # no count "because it has been a while" during the test, however slow the machine
    monkeypatch.setattr(triggerer_module, "BACKLOG_IDLE_CHECK_INTERVAL", 3600.0)
    harness = TriggererHarness(f"sqlite:///{tmp_path}/herald.db")
    case = RedisCase()
    case.require()
    case.attach(harness)
    # Blocking reads of 50 ms: without a message each consumer asks for room twenty times a second.
    urls = [case.url(f"idle-backlog-{uuid.uuid4().hex[:8]}-{i}") for i in range(3)]

    async def scenario() -> None:
        me: Triggerer = await harness.start(*[(f"r{i}", case.trigger(url, block_ms=50)) for i, url in enumerate(urls)])
        await harness.wait_for(lambda: sum(c.receiving for c in me.consumers.values()) == 3, what="consumers")
        quiet = len(counts)
        assert quiet == 1  # the first consumer to ask for room counted it
        # Dozens of empty long polls later, the backlog was not counted again.
        polls = len(empty_polls)
        await harness.wait_for(lambda: len(empty_polls) >= polls + 30, what="empty polls")
        assert len(counts) == quiet
        await case.publish(urls[0], b'{"n": 1}')
        await harness.wait_for(lambda: len(harness.events()) == 1, what="the event")
        await harness.wait_for(lambda: len(counts) > quiet, what="the backlog counted after the delivery")
        await harness.stop()

    async def cleanup() -> None:
        for url in urls:
            await case.cleanup(url)

    try:
        run(scenario, harness)
    finally:
        harness.close()
        run(cleanup)
