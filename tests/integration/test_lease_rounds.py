"""An idle triggerer's periodic writes cost the same for one consumer or many (SQLite and PostgreSQL).

Each lease round is one heartbeat transaction and one UPDATE of every lease,
and a lag that did not change is not written again: with a hundred idle
watchers, statements per consumer were most of Herald's idle CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event

from herald.store import watchers
from herald.triggerer.triggerer import Triggerer
from tests.integration.contract import run
from tests.integration.harness import TriggererHarness
from tests.integration.test_local import LocalCase
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
