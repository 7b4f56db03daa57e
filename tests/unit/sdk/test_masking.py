"""sdk/masking.py: one masking of URLs, error texts and trigger descriptions."""

from __future__ import annotations

import json

import pytest

from herald.sdk.masking import environment_secrets, mask_fields, mask_text, mask_url, url_secrets


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://u:pw1@h:6379/0?stream=s", "redis://u:***@h:6379/0?stream=s"),
        ("redis://:pw1@h/0", "redis://:***@h/0"),
        ("redis://h:6379/0?stream=s&password=pw1", "redis://h:6379/0?stream=s&password=***"),
        (
            "kafka://k1:9092,k2:9092/t?sasl_password=pw1&group_id=g&sasl_username=me",
            "kafka://k1:9092,k2:9092/t?sasl_password=***&group_id=g&sasl_username=me",
        ),
        (
            "sqs+http://127.0.0.1:5005/0/q?aws_access_key_id=AK&aws_secret_access_key=SK1&region=eu",
            "sqs+http://127.0.0.1:5005/0/q?aws_access_key_id=AK&aws_secret_access_key=***&region=eu",
        ),
        ("nats://h:4222/s?token=tk1", "nats://h:4222/s?token=***"),
        ("nats://h:4222/s?Auth_Token=tk1", "nats://h:4222/s?Auth_Token=***"),
        ("kafka://u:p@k1:9092,k2:9092/t", "kafka://u:***@k1:9092,k2:9092/t"),
        ("amqp://guest:secret@127.0.0.1:5672/%2F?queue=q", "amqp://guest:***@127.0.0.1:5672/%2F?queue=q"),
        ("local://q", "local://q"),
        ("redis://h/0?stream=s&password=", "redis://h/0?stream=s&password=***"),
    ],
)
def test_mask_url_hides_the_password_and_every_sensitive_option(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_url_keeps_a_url_without_secrets_as_written() -> None:
    url = "mqtt://h:1883/a%2Fb?qos=1&client_id=x&keepalive=60#frag"
    assert mask_url(url) == url


def test_mask_text_masks_urls_quoted_secrets_and_known_values() -> None:
    traceback = (
        "Traceback (most recent call last):\n"
        '  File "/dags/d.py", line 3, in <module>\n'
        '    trigger = SqsTrigger(url="sqs://h/q?aws_secret_access_key=SK9", password="pw9", region="eu")\n'
        "ValueError: cannot reach redis://u:pw8@h:6379/0 with token hunter22 (client_id='c1')\n"
    )
    shown = mask_text(traceback, {"hunter22"})
    for secret in ("SK9", "pw9", "pw8", "hunter22"):
        assert secret not in shown
    assert 'password="***"' in shown and "redis://u:***@h:6379/0" in shown
    assert "aws_secret_access_key=***" in shown
    assert 'region="eu"' in shown and "client_id='c1'" in shown and 'File "/dags/d.py", line 3' in shown


def test_environment_secrets_reads_connections_and_sensitive_variables() -> None:
    env = {
        "HERALD_CONN_BROKER": "redis://u:cpw1@h:6379/0?token=ctk1&db=0",
        "AIRFLOW_CONN_WAREHOUSE": json.dumps(
            {"conn_type": "postgres", "login": "me", "password": "jpw1", "extra": {"api_key": "jak1", "region": "eu"}}
        ),
        "AIRFLOW_VAR_DB_PASSWORD": "vpw1",
        "HERALD_VAR_BUCKET": "not-a-secret",
        "AIRFLOW_CONN_BROKEN": "{not json",
        "PATH": "/usr/bin",
    }
    assert environment_secrets(env) == {"cpw1", "ctk1", "jpw1", "jak1", "vpw1"}


def test_url_secrets_are_the_password_and_the_sensitive_options() -> None:
    assert url_secrets("redis://u:p%40ss1@h/0?stream=s&password=qpw1") == {"p%40ss1", "p@ss1", "qpw1"}
    assert url_secrets("local://q") == set()


def test_mask_fields_masks_what_any_trigger_describes() -> None:
    described = {
        "url": "redis://u:pw1@h/0?password=pw2",
        "broker": "mine",
        "password": "pw3",
        "options": {"sasl_password": "pw4", "servers": ["nats://a:pw5@h:4222"], "timeout": 3},
        "token": None,
    }
    shown = mask_fields(described)
    assert not any(f"pw{n}" in json.dumps(shown) for n in range(1, 6))
    assert shown["password"] == "***" and shown["options"]["sasl_password"] == "***"
    assert shown["options"]["timeout"] == 3 and shown["token"] is None and shown["broker"] == "mine"
