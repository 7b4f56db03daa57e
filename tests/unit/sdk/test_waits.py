"""What a deferral says, and how its expressions read an event."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from herald.scheduler.waits import matches
from herald.sdk.waits import Deferral, equality_of, lookup_key, payload_of, value_at


def test_an_expression_reads_the_payload_of_a_message_event_or_the_whole_extra() -> None:
    assert payload_of({"payload": {"id": 1}, "message": {"queue": "q"}}) == {"id": 1}
    assert payload_of({"id": 1}) == {"id": 1}
    assert payload_of(None) == {}
    # an extra that is not an object is the payload itself (dict() would mangle or refuse it)
    assert payload_of([["id", 1]]) == [["id", 1]]
    assert not matches("id == `1`", [["id", 1]])


def test_a_match_holds_as_jmespath_counts_truth() -> None:
    assert matches("id == 'a'", {"payload": {"id": "a"}})
    assert not matches("id == 'a'", {"payload": {"id": "b"}})
    assert not matches("tags", {"payload": {"tags": []}})
    assert matches("tags", {"payload": {"tags": ["x"]}})
    assert not matches("n > `3`", {"payload": {"n": "text"}})  # a payload of another shape: no match
    assert matches(None, {})


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("order_id == 'A1'", (("order_id",), "A1")),
        ("order_id == 'A1' && approved", (("order_id",), "A1")),
        ("'A1' == order.id", (("order", "id"), "A1")),
        ("n == `2`", (("n",), 2)),
        ("approved", None),
        ("a == b", None),
        ("a != 'x'", None),
        ("a == 'x' || b == 'y'", None),
    ],
)
def test_the_equality_an_expression_requires_is_its_index_entry(expression: str, expected: object) -> None:
    assert equality_of(expression) == expected


def test_index_keys_are_equal_where_jmespath_finds_values_equal() -> None:
    assert lookup_key(1) == lookup_key(1.0)
    assert lookup_key("1") != lookup_key(1)
    assert lookup_key(True) != lookup_key(1)
    assert value_at({"a": {"b": 3}}, ("a", "b")) == 3
    assert value_at({"a": 3}, ("a", "b")) is None


def test_a_deferral_waits_for_an_event_or_a_time_and_travels_as_json() -> None:
    event = Deferral(asset="approvals", match="id == 'a'", timeout=60, soft_fail=True)
    assert Deferral.from_wire(event.to_wire()) == event
    moment = Deferral(until=datetime(2030, 1, 1, tzinfo=UTC))
    assert Deferral.from_wire(moment.to_wire()) == moment
    with pytest.raises(ValueError, match="names none"):
        Deferral()
    with pytest.raises(ValueError, match="not two"):
        Deferral(asset="a", trigger="m.T")
    with pytest.raises(ValueError, match="JMESPath"):
        Deferral(asset="a", match="==")
    with pytest.raises(ValueError, match="timeout"):
        Deferral(asset="a", timeout=-1)
