"""The one options parser and header normalisation."""

from __future__ import annotations

import pytest

from herald.sdk.triggers import Message, normalize_headers
from herald.triggers.sqs import SqsOptions, SqsTrigger


def test_query_then_keywords_with_types_and_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_CONN_AWS_TEST", "sqs+http://AK:SK@127.0.0.1:5005/?region=eu-west-1&batches=2")
    trigger = SqsTrigger(
        "sqs://_/000000000000/orders?wait_time_seconds=3&airflow_compat=true",
        aws_conn_id="aws_test",
        max_messages="4",
    )
    options = trigger.options
    assert isinstance(options, SqsOptions)
    assert (options.wait_time_seconds, options.max_messages, options.batches) == (3, 4, 2)
    assert options.airflow_compat is True and options.region == "eu-west-1" and options.conn_id == "aws_test"
    assert trigger.address.endpoint_url == "http://127.0.0.1:5005"
    assert "SK" not in str(trigger.describe())


def test_unknown_option_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown SQS option 'wiat'; valid: .*wait_time_seconds"):
        SqsTrigger("sqs://h/1/q", wiat=3)
    with pytest.raises(ValueError, match=r"unknown SQS option 'x' in the URL"):
        SqsTrigger("sqs://h/1/q?x=1")
    with pytest.raises(ValueError, match="not a valid int"):
        SqsTrigger("sqs://h/1/q?batches=many")


def test_headers_are_text_whatever_the_broker_gives() -> None:
    assert normalize_headers({b"a": b"1", "b": ["x", b"y"], "c": 3, "d": None}) == {
        "a": "1",
        "b": "x,y",
        "c": "3",
        "d": "",
    }
    assert normalize_headers([(b"k", b"\xff")]) == {"k": "/w=="}  # not UTF-8: base64, nothing lost
    assert Message(body=b"", dedupe_key="1", headers={"n": 1}).headers == {"n": "1"}  # type: ignore[dict-item]
