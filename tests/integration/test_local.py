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
        await harness.settle(0.3)
        await harness.stop()

    try:
        run(scenario)
        assert [e["payload"]["t"] for e in harness.events("raw_copy")] == [10, 60, 70]
        assert [e["payload"]["t"] for e in harness.events("hot_only")] == [60, 70]
        # Each asset's event is queued for the DAG on that asset only.
        assert harness.queued() == 5
    finally:
        harness.close()
