"""HERALD_MAX_PAYLOAD_BYTES is the size limit of a trigger that sets none."""

from __future__ import annotations

import pytest

from herald import MessageQueueTrigger
from herald.config import Settings
from herald.sdk.triggers import Message
from herald.triggerer.triggerer import default_payload_limit


def _message(size: int) -> Message:
    return Message(body=b"x" * size, dedupe_key="k")


def test_the_setting_is_the_limit_of_a_trigger_without_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_MAX_PAYLOAD_BYTES", "100")
    limit = Settings().limits.payload
    assert limit == 100
    trigger = MessageQueueTrigger("local://sized")
    default_payload_limit(trigger, limit)
    assert trigger.to_payload(_message(100))[0] is True
    with pytest.raises(ValueError, match="over the limit of 100"):
        trigger.to_payload(_message(101))


def test_a_trigger_s_own_limit_wins() -> None:
    trigger = MessageQueueTrigger("local://sized", max_payload_bytes=500)
    default_payload_limit(trigger, 100)
    assert trigger.to_payload(_message(400))[0] is True
