"""Admission: payload checks, sanitised message identity, and apply_function off the loop with a time limit."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from herald.sdk.triggers import Message
from herald.sdk.watcher import AssetWatcher
from herald.store.sync import WatcherSpec
from herald.triggerer.admission import Admission, admit_within, clean_message
from herald.triggers.local import LocalQueueTrigger


def spec(apply_function: Any = None, watcher_id: int = 1) -> WatcherSpec:
    trigger = LocalQueueTrigger("local://q", apply_function=apply_function)
    return WatcherSpec(watcher_id, f"w{watcher_id}", 7, "a", AssetWatcher(f"w{watcher_id}", trigger), "k")


def message(body: bytes, dedupe_key: str = "1", **kw: Any) -> Message:
    return Message(body=body, dedupe_key=dedupe_key, **kw)


def test_payloads_that_cannot_be_stored_become_dead_letters_with_the_reason() -> None:
    made = outcomes(
        [spec()],
        [
            message(b"[" * 65 + b"]" * 65),
            message(b'{"v": NaN}'),
            message(b'"\\udc00"'),
            message(b"[" * 64 + b"]" * 64),
            message(b'{"n": "a\\u0000b"}'),
        ],
        max_depth=64,
    )
    assert [o.kind for o in made] == ["dead", "dead", "dead", "event", "event"]
    assert "nested more than 64" in str(made[0].error)
    assert "not JSON" in str(made[1].error)
    assert "lone surrogate" in str(made[2].error)


def test_the_text_herald_stores_about_a_message_is_sanitised() -> None:
    raw = message(b"{}", "id\x00", key="k\ud800", headers={"h\x00": "v\x00"}, metadata={"message_id": "m\x00"})
    clean = clean_message(raw)
    assert clean.dedupe_key == "id\ufffd" and clean.key == "k\ufffd"
    assert clean.headers == {"h\ufffd": "v\ufffd"} and clean.metadata == {"message_id": "m\ufffd"}
    odd = clean_message(message(b"{}", "k" * 700, metadata={"raw": b"\x00\xff", "n": float("nan")}))
    assert len(odd.dedupe_key) == 500
    assert odd.metadata == {"raw": repr(b"\x00\xff"), "n": "NaN"}  # a trigger's non-JSON metadata, as text
    fine = message(b"{}", "id", headers={"h": "v"})
    assert clean_message(fine) is fine


def test_a_hanging_apply_function_is_a_dead_letter_and_the_next_messages_go_on() -> None:
    release = threading.Event()
    loop_thread: list[int] = []

    ticks = 0
    hang_began_at_tick: list[int] = []

    def apply(m: Message) -> Any:
        loop_thread.append(threading.get_ident())
        body = m.json()
        if body.get("hang"):
            hang_began_at_tick.append(ticks)
            release.wait(30)  # released at the end of the test: the abandoned thread ends
        return body

    async def scenario() -> tuple[list[Any], float, int]:
        nonlocal ticks
        admission = Admission("test", timeout=0.3)

        async def heartbeat() -> None:  # the event loop stays free while apply_function hangs
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        beat = asyncio.create_task(heartbeat())
        started = time.monotonic()
        made = await admission.outcomes(
            [spec(apply)],
            [message(b'{"n": 1}', "1"), message(b'{"hang": true}', "2"), message(b'{"n": 3}', "3")],
        )
        took = time.monotonic() - started
        during_hang = ticks - hang_began_at_tick[0]
        again = await admission.outcomes([spec(apply)], [message(b'{"n": 4}', "4")])
        beat.cancel()
        admission.close()
        return [*made, *again], took, during_hang

    try:
        made, took, during_hang = asyncio.run(scenario())
    finally:
        release.set()
    assert [(o.message.dedupe_key, o.kind) for o in made] == [
        ("1", "event"),
        ("2", "dead"),
        ("3", "event"),
        ("4", "event"),
    ]
    assert "did not return within 0.3s" in str(made[1].error)
    assert [o.payload for o in made if o.kind == "event"] == [{"n": 1}, {"n": 3}, {"n": 4}]
    assert took < 5
    # the loop went on beating while apply_function hung (a blocked loop would not tick once)
    assert during_hang >= 1
    assert threading.main_thread().ident not in loop_thread


def test_apply_function_raising_even_system_exit_is_the_message_s_problem() -> None:
    def apply(m: Message) -> Any:
        if m.dedupe_key == "bad":
            raise SystemExit(3)
        return {"ok": True}

    async def scenario() -> list[Any]:
        admission = Admission("test", timeout=5)
        try:
            return await admission.outcomes([spec(apply)], [message(b"{}", "bad"), message(b"{}", "good")])
        finally:
            admission.close()

    made = asyncio.run(scenario())
    assert [o.kind for o in made] == ["dead", "event"]
    assert "SystemExit" in str(made[0].error)


def test_replay_admission_has_the_same_time_limit() -> None:
    release = threading.Event()

    def apply(m: Message) -> Any:
        release.wait(30)
        return {}

    started = time.monotonic()
    try:
        admit_within(spec(apply).watcher.trigger, message(b"{}"), 64, 0.2)
    except TimeoutError as exc:
        assert "did not return within 0.2s" in str(exc)
    else:
        raise AssertionError("a hanging apply_function must time out")
    finally:
        release.set()
    assert time.monotonic() - started < 5


def outcomes(specs: list[WatcherSpec], messages: list[Message], max_depth: int = 64) -> list[Any]:
    """The triggerer's own verdicts (`Admission.outcomes`), from synchronous test code."""
    return asyncio.run(Admission("test", max_depth).outcomes(specs, messages))
