"""Two triggerers in one event loop hand watchers over cleanly (SQLite and PostgreSQL).

The multi-process behaviour (shares, a newcomer, SIGKILL) is tests/e2e/test_sharing.py;
here the rounds are fast (`LEASE_RENEW` patched down, leases still 10 s) so a test can
tell a clean hand-over (the next round) from a lease that merely expired.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import pytest
from sqlalchemy import Engine

from herald.sdk.triggers import BaseEventTrigger, Message
from herald.store import watchers
from herald.triggerer import triggerer as triggerer_module
from herald.triggerer.local_queue import LocalQueueSource
from herald.triggerer.triggerer import Triggerer
from tests.integration.contract import run
from tests.integration.harness import TriggererHarness
from tests.integration.test_local import LocalCase

QUEUES = [f"share_{i}" for i in range(10)]


def pinned(case: LocalCase, queue: str) -> BaseEventTrigger:
    trigger = case.trigger(f"local://{queue}")
    trigger.shareable = False  # one reader at a time: the leases decide which
    return trigger


def test_a_newcomer_gets_half_after_the_batches_in_flight_and_a_stopped_ones_share_moves_at_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(triggerer_module, "LEASE_RENEW", 0.1)
    # Which queues have a batch received and not yet acknowledged, and any lease released
    # while its queue had one (the next holder would read that batch again).
    in_flight: set[str] = set()
    early: list[str] = []
    receive, ack, release = LocalQueueSource.receive, LocalQueueSource.ack, watchers.release_leases

    async def receiving(self: LocalQueueSource, max_messages: int) -> list[Message]:
        got = await receive(self, max_messages)
        if got:
            in_flight.add(self.queue)
        return got

    async def acknowledging(self: LocalQueueSource, messages: list[Message]) -> None:
        in_flight.discard(self.queue)
        await ack(self, messages)

    def releasing(engine: Engine, owner: str, ids: Sequence[int]) -> None:
        assert harness.catalog is not None
        queues = {getattr(s.watcher.trigger, "queue", "") for s in harness.catalog.watchers if s.id in ids}
        early.extend(sorted(queues & in_flight))
        release(engine, owner, ids)

    monkeypatch.setattr(LocalQueueSource, "receive", receiving)
    monkeypatch.setattr(LocalQueueSource, "ack", acknowledging)
    monkeypatch.setattr(watchers, "release_leases", releasing)
    harness = TriggererHarness(database_url)
    case = LocalCase()
    case.attach(harness)
    sent = 0

    async def publish(rounds: int) -> None:
        nonlocal sent
        for _ in range(rounds):
            for q in QUEUES:
                await case.publish(f"local://{q}", json.dumps({"q": q, "n": sent}).encode())
                sent += 1

    async def scenario() -> None:
        first = await harness.start(*[(q, pinned(case, q)) for q in QUEUES])
        assert len(first.leased) == 10
        # Batches are slow to commit while the second triggerer joins and the first hands
        # consumers over: each lease must be released only once its batch is acknowledged.
        first.fault = lambda point: time.sleep(0.05) if point == "before_commit" else None
        await publish(3)
        second = Triggerer(harness.db, harness.listener, lambda: None, owner="second")
        assert harness.catalog is not None
        second.update(harness.catalog.watchers, harness.catalog.consumers)
        await publish(3)
        await harness.wait_for(
            lambda: (len(first.leased), len(second.leased)) == (5, 5), timeout=10, what="a 5/5 share"
        )
        await publish(2)
        await harness.wait_events(sent, timeout=30)

        # A clean stop gives the leases up: they move at the next round, not after 10 s.
        await first.stop()
        harness.triggerer = None
        await harness.wait_for(lambda: len(second.leased) == 10, timeout=5, what="the second holding all ten")
        await publish(2)
        await harness.wait_events(sent, timeout=30)
        await second.stop()

    try:
        run(scenario, harness)
        events = harness.events()
        assert sorted(e["payload"]["n"] for e in events) == list(range(sent))
        assert early == [], "a lease was released while its batch was in flight"
        assert sum(w["deduped"] for w in harness.watchers()) == 0, "a message was read by both triggerers"
        assert {w["lease_owner"] for w in harness.watchers()} == {None}  # the last stop released them too
    finally:
        harness.close()
