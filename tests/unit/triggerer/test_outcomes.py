"""What watchers make of a received batch (`Admission.outcomes`), before anything is stored."""

from __future__ import annotations

import asyncio
from typing import Any

from herald import AssetWatcher, MessageQueueTrigger
from herald.sdk.triggers import Message
from herald.store.sync import WatcherSpec
from herald.triggerer.admission import Admission


def spec(wid: int, asset_id: int, **options: Any) -> WatcherSpec:
    watcher = AssetWatcher(f"w{wid}", MessageQueueTrigger("local://shared", **options))
    return WatcherSpec(wid, f"w{wid}", asset_id, f"asset{asset_id}", watcher, "local://shared")


def message(body: bytes, key: str) -> Message:
    return Message(body=body, dedupe_key=key)


def verdicts(specs: list[WatcherSpec], messages: list[Message]) -> list[tuple[int, str, str, Any]]:
    return [(o.watcher_id, o.message.dedupe_key, o.kind, o.payload) for o in outcomes(specs, messages)]


def test_every_watcher_of_a_queue_judges_every_message_in_order() -> None:
    plain = spec(1, 10)
    hot = spec(2, 20, filter="temp > `30`")
    batch = [message(b'{"temp": 31}', "a"), message(b'{"temp": 5}', "b")]
    assert verdicts([plain, hot], batch) == [
        (1, "a", "event", {"temp": 31}),
        (2, "a", "event", {"temp": 31}),
        (1, "b", "event", {"temp": 5}),
        (2, "b", "skip", {"temp": 5}),
    ]


def test_a_failing_apply_function_makes_a_dead_letter_with_its_reason_for_that_watcher_only() -> None:
    def strict(m: Message) -> Any:
        return {"id": int(m.text())}

    picky = spec(1, 10, apply_function=strict)
    lenient = spec(2, 20)
    made = {(o.watcher_id, o.kind): o for o in outcomes([picky, lenient], [message(b"seven", "k")])}
    assert set(made) == {(1, "dead"), (2, "event")}
    assert made[(1, "dead")].error == "ValueError: invalid literal for int() with base 10: 'seven'"
    assert made[(2, "event")].payload == "seven"


def test_a_body_that_is_not_text_is_kept_as_base64_and_an_oversized_one_is_a_dead_letter() -> None:
    small = spec(1, 10, max_payload_bytes=4)
    (binary,) = outcomes([spec(2, 20)], [message(b"\xff\x00", "bin")])
    assert (binary.kind, binary.payload, binary.encoding) == ("event", "/wA=", "base64")
    (big,) = outcomes([small], [message(b"12345", "big")])
    assert big.kind == "dead" and "over the limit of 4" in (big.error or "")


def test_nothing_received_makes_nothing() -> None:
    assert verdicts([spec(1, 10)], []) == []


def outcomes(specs: list[WatcherSpec], messages: list[Message], max_depth: int = 64) -> list[Any]:
    """The triggerer's own verdicts (`Admission.outcomes`), from synchronous test code."""
    return asyncio.run(Admission("test", max_depth).outcomes(specs, messages))
