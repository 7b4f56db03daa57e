"""The delivery contract on the embedded local:// queue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from herald.config import Settings
from tests.integration.contract import BrokerCase, ContractSuite, run
from tests.integration.harness import TriggererHarness


class LocalCase(BrokerCase):
    broker: ClassVar[str] = "local"

    #: why the contract's reconnect test does not apply
    no_kill_connection: ClassVar[str] = "local:// has no broker connection: it is read from the metadata database"

    #: why the contract's broker restart test does not apply
    no_restart: ClassVar[str] = "local:// has no broker: its messages are rows of the metadata database"

    def attach(self, harness: TriggererHarness) -> None:
        self.settings = Settings(database_url=harness.url)

    def url(self, name: str) -> str:
        return f"local://{name}"

    async def publish(self, url: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        # The harness's database, not the one of this process's settings.
        import asyncio

        from herald.publishing import local_publish
        from herald.triggers.local import queue_name

        await asyncio.to_thread(local_publish, queue_name(url), [body], headers, settings=self.settings)


class TestLocalContract(ContractSuite):
    case = LocalCase()


def test_two_assets_watching_one_queue_share_one_consumer(tmp_path: Path) -> None:
    harness = TriggererHarness(f"sqlite:///{tmp_path}/herald.db")
    case = LocalCase()
    case.attach(harness)

    async def scenario() -> None:
        triggerer = await harness.start(
            ("raw_copy", case.trigger("local://shared")),
            ("hot_only", case.trigger("local://shared", filter="t > `50`")),
        )
        assert len(triggerer.consumers) == 1
        for t in (10, 60, 70):
            await case.publish("local://shared", json.dumps({"t": t}).encode())
        await harness.wait_events(3, asset="raw_copy")
        await harness.wait_events(2, asset="hot_only")
        await harness.wait_received(6)  # three messages, each seen by both watchers
        await harness.stop()

    try:
        run(scenario)
        assert [e["payload"]["t"] for e in harness.events("raw_copy")] == [10, 60, 70]
        assert [e["payload"]["t"] for e in harness.events("hot_only")] == [60, 70]
        # Each asset's event is queued for the DAG on that asset only.
        assert harness.queued() == 5
    finally:
        harness.close()


def test_a_paused_watcher_is_not_consumed_and_its_messages_wait_until_resumed(database_url: str) -> None:
    from sqlalchemy import func, select

    from herald.commands import watchers as watcher_commands
    from herald.store import tables as t

    harness = TriggererHarness(database_url)
    case = LocalCase()
    case.attach(harness)

    def waiting() -> int:
        with harness.db.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.local_queue_message)).scalar_one())

    async def scenario() -> None:
        triggerer = await harness.start(("paused_orders", case.trigger("local://paused_orders")))
        [watcher] = harness.watchers()
        # Given a paused watcher, once its triggerer has let it go
        watcher_commands.set_paused(harness.db.engine, watcher["id"], True)
        await harness.wait_for(lambda: not triggerer.consumers, what="the paused watcher's consumer to stop")
        # When a message arrives, it waits in the queue: no event, the watcher still paused
        await case.publish("local://paused_orders", b'{"n": 1}')
        assert waiting() == 1 and harness.events() == []
        assert [w["state"] for w in harness.watchers()] == ["paused"]
        # Then, resumed, the watcher consumes what waited
        watcher_commands.set_paused(harness.db.engine, watcher["id"], False)
        assert len(await harness.wait_events(1)) == 1
        assert waiting() == 0
        await harness.wait_for(lambda: harness.watchers()[0]["state"] == "running", what="the watcher running")

    try:
        run(scenario, harness)
    finally:
        harness.close()
