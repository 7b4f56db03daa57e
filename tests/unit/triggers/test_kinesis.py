"""Kinesis URLs and options (no server: the integration tests talk to moto)."""

from __future__ import annotations

import asyncio

import pytest

from herald import MessageQueueTrigger
from herald.triggers.kinesis import KinesisPublisher, KinesisTrigger, canonical_url, display_url, parse_url
from herald.triggers.registry import publisher_class, scheme_of


def test_the_stream_on_aws_and_on_a_local_endpoint() -> None:
    aws = parse_url("kinesis://Orders.v2", "eu-west-1")
    assert (aws.stream, aws.endpoint_url, aws.region) == ("Orders.v2", None, "eu-west-1")  # the case is kept
    assert "endpoint_url" not in aws.client_kwargs()
    local = parse_url("kinesis+http://AK:SK@127.0.0.1:4567/orders")
    assert (local.stream, local.endpoint_url) == ("orders", "http://127.0.0.1:4567")
    assert local.client_kwargs()["aws_access_key_id"] == "AK"
    assert parse_url("kinesis+https://kinesis.local/orders").endpoint_url == "https://kinesis.local"
    assert canonical_url("kinesis://u:p@orders?x=1") == "kinesis://u:p@_/orders?x=1"
    assert display_url(canonical_url("kinesis://u:p@orders")) == "kinesis://u:p@orders"


def test_region_name_and_aws_conn_id_as_airflow_spells_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_CONN_AWS_DEFAULT", "kinesis+http://AK:SK@127.0.0.1:4567?region_name=us-west-2")
    trigger = MessageQueueTrigger("kinesis://orders", aws_conn_id="aws_default", poll_interval="0.2")
    assert isinstance(trigger, KinesisTrigger)
    assert trigger.address.endpoint_url == "http://127.0.0.1:4567" and trigger.address.stream == "orders"
    assert trigger.address.region == "us-west-2" and trigger.poll_interval == 0.2
    described = str(trigger.describe())
    assert "SK" not in described and "conn_id" in described
    assert KinesisTrigger("kinesis://orders?region_name=ap-south-1").describe()["url"] == "kinesis://orders"


def test_wrong_urls_and_options_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"unknown Kinesis option 'shard'; valid: .*initial_position"):
        KinesisTrigger("kinesis://orders", shard="x")
    with pytest.raises(ValueError, match=r"unknown Kinesis option 'x' in the URL"):
        KinesisTrigger("kinesis://orders?x=1")
    with pytest.raises(ValueError, match="initial_position must be one of TRIM_HORIZON, LATEST"):
        KinesisTrigger("kinesis://orders?initial_position=AT_TIMESTAMP")
    with pytest.raises(ValueError, match="max_records must be between 1 and 10000"):
        KinesisTrigger("kinesis://orders", max_records=0)
    with pytest.raises(ValueError, match="needs the endpoint"):
        KinesisTrigger("kinesis+http://_/orders")
    with pytest.raises(ValueError, match="not a Kinesis stream name"):
        KinesisTrigger("kinesis://bad%20name")
    with pytest.raises(ValueError, match="expected kinesis://STREAM"):
        KinesisTrigger("kinesis+http://127.0.0.1:1/a/b")


def test_the_scheme_is_registered_with_its_publisher() -> None:
    for url in ("kinesis://s", "kinesis+http://127.0.0.1:1/s", "kinesis+https://h/s"):
        assert publisher_class(scheme_of(url)) is KinesisPublisher
    # Publishers of one endpoint and credentials share one client, whatever the stream.
    assert KinesisPublisher.pool_key("kinesis+http://127.0.0.1:1/a?partition_key=k") == KinesisPublisher.pool_key(
        "kinesis+http://127.0.0.1:1/b"
    )


def test_the_publisher_refuses_headers_rather_than_dropping_them() -> None:
    publisher = KinesisPublisher("kinesis+http://127.0.0.1:1/s")
    with pytest.raises(ValueError, match="no headers"):
        asyncio.run(publisher.publish("kinesis+http://127.0.0.1:1/s", b"x", {"h": "v"}))
