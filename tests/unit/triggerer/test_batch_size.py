"""A receive asks for fewer messages after a batch of large ones: a batch's bodies stay near BATCH_BYTES."""

from __future__ import annotations

from herald.triggerer.triggerer import BATCH_BYTES, BATCH_SIZE, batch_size_after
from herald.triggers.base import Message


def _batch(count: int, size: int) -> list[Message]:
    return [Message(body=b"x" * size, dedupe_key=str(i)) for i in range(count)]


def test_small_messages_keep_the_full_batch() -> None:
    assert batch_size_after(_batch(10, 200)) == BATCH_SIZE
    assert batch_size_after(_batch(3, 0)) == BATCH_SIZE  # empty bodies


def test_large_messages_shrink_the_next_receive_to_the_byte_budget() -> None:
    one_mib = 1024 * 1024
    asked = batch_size_after(_batch(4, one_mib))
    assert asked == BATCH_BYTES // one_mib and asked * one_mib <= BATCH_BYTES < BATCH_SIZE * one_mib
    # a message larger than the whole budget is still received, one at a time
    assert batch_size_after(_batch(1, BATCH_BYTES * 2)) == 1
