"""The delivery contract on the embedded local:// queue."""

from __future__ import annotations

from typing import ClassVar

from herald.config import Settings
from tests.integration.contract import BrokerCase, ContractSuite
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
