"""A trigger's log lines go to its own try's log: two triggers running at once on one loop keep theirs apart."""

from __future__ import annotations

import asyncio
import logging

import pytest

from herald.triggerer import trigger_logs


async def _trigger(name: str, other: logging.Logger, steps: int) -> str:
    own = logging.getLogger(f"tests.triggers.{name}")
    trigger_logs.watch_logger(own)
    with trigger_logs.capturing(10_000) as captured:
        for i in range(steps):
            own.info("%s step %d", name, i)
            await asyncio.sleep(0)  # the other trigger runs in between
        other.warning("%s warns through a library's logger", name)
        return captured.getvalue()


def test_each_trigger_keeps_its_own_lines_and_info_stays_out_of_the_process_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    library = logging.getLogger("tests.some_library")
    caplog.set_level(logging.WARNING)  # the process logs warnings and above (HERALD_LOG_LEVEL's default)

    async def both() -> list[str]:
        return list(await asyncio.gather(_trigger("a", library, 3), _trigger("b", library, 2)))

    a, b = asyncio.run(both())
    assert [line.split(": ", 1)[1] for line in a.splitlines()] == [
        "a step 0",
        "a step 1",
        "a step 2",
        "a warns through a library's logger",
    ]
    assert " INFO tests.triggers.a: " in a and " WARNING tests.some_library: " in a
    assert [line.split(": ", 1)[1] for line in b.splitlines()] == [
        "b step 0",
        "b step 1",
        "b warns through a library's logger",
    ]
    # the process log got the warnings, not the triggers' INFO lines
    assert sorted(r.getMessage() for r in caplog.records) == [
        "a warns through a library's logger",
        "b warns through a library's logger",
    ]


def test_a_log_past_the_limit_keeps_its_end() -> None:
    own = logging.getLogger("tests.triggers.chatty")
    trigger_logs.watch_logger(own)
    with trigger_logs.capturing(1_000) as captured:
        for i in range(200):
            own.info("line %d", i)
    text = captured.getvalue()
    assert text.startswith("[... ") and "line 199" in text and "line 0\n" not in text
    assert len(text.encode()) <= 1_000 + 200
