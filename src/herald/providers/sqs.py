"""`SqsSensorTrigger`: Airflow's Amazon SQS trigger arguments, on Herald's SQS trigger.

The payload of each event is what Airflow's trigger gives,
`{"status": "success", "message_batch": [{"MessageId", "ReceiptHandle",
"MD5OfBody", "Body", "Attributes", "MessageAttributes"}]}`, with one message
per event so that runs stay one per message: a task reads
`event.extra["payload"]["message_batch"][0]["Body"]` as in Airflow.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from herald.providers.connections import Connection, get_connection
from herald.providers.filtering import MessageFilter
from herald.triggers.base import BaseEventTrigger, Message

#: the schemes of Herald's own SQS URLs, kept as they are
_HERALD_SCHEMES = ("sqs", "sqs+http", "sqs+https")


def _json_safe(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def sqs_entry(message: Message) -> dict[str, Any]:
    """One message as SQS's ReceiveMessage returns it (binary attributes as base64 text)."""
    raw: dict[str, Any] = getattr(message.handle, "raw", None) or {}
    body = raw.get("Body")
    if body is None:
        body = message.body.decode("utf-8", errors="replace")
    return {
        "MessageId": raw.get("MessageId") or message.metadata.get("message_id"),
        "ReceiptHandle": raw.get("ReceiptHandle") or getattr(message.handle, "receipt_handle", None),
        "MD5OfBody": raw.get("MD5OfBody") or hashlib.md5(body.encode("utf-8")).hexdigest(),
        "Body": body,
        "Attributes": dict(raw.get("Attributes") or {}),
        "MessageAttributes": _json_safe(dict(raw.get("MessageAttributes") or {})),
    }


class SqsMessageBatch:
    """The apply step of an Airflow-spelled SQS trigger: filter, then Airflow's payload shape.

    Args:
        message_filter: keeps only the matching messages (the others are skipped).
    """

    def __init__(self, message_filter: MessageFilter | None = None) -> None:
        self.message_filter = message_filter

    def __call__(self, message: Message) -> dict[str, Any] | None:
        entry = sqs_entry(message)
        if self.message_filter is not None and not self.message_filter.matches(entry["Body"]):
            return None
        return {"status": "success", "message_batch": [entry]}


def _endpoint(connection: Connection | None) -> str | None:
    if connection is None:
        return None
    extra = connection.extra
    configured = extra.get("endpoint_url") or ((extra.get("service_config") or {}).get("sqs") or {}).get("endpoint_url")
    if configured:
        return str(configured)
    if connection.conn_type.replace("_", "+") in _HERALD_SCHEMES and connection.host:
        # A Herald URL as the connection: sqs+http://KEY:SECRET@HOST:PORT
        scheme = "http" if connection.conn_type.replace("_", "+") == "sqs+http" else "https"
        port = f":{connection.port}" if connection.port else ""
        return f"{scheme}://{connection.host}{port}"
    return None


def herald_url(sqs_queue: str, connection: Connection | None, region_name: str | None) -> str:
    """The `sqs://` URL of `sqs_queue` (an AWS queue URL, a local server's, or Herald's) with the connection's keys."""
    parts = urlsplit(sqs_queue)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", *_HERALD_SCHEMES):
        raise ValueError(
            f"sqs_queue {sqs_queue!r} is not an SQS queue URL: expected https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE"
        )
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) != 2:
        raise ValueError(f"sqs_queue {sqs_queue!r} is not an SQS queue URL: expected SCHEME://HOST/ACCOUNT/QUEUE")
    query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
    endpoint = _endpoint(connection)
    if endpoint is not None:
        # Airflow's client talks to the connection's endpoint_url, whatever host the queue URL names.
        target = urlsplit(endpoint)
        herald_scheme, netloc = ("sqs+http" if target.scheme == "http" else "sqs"), target.netloc
    elif scheme in _HERALD_SCHEMES:
        herald_scheme, netloc = scheme, parts.netloc.rpartition("@")[2]
    else:
        herald_scheme, netloc = ("sqs+http" if scheme == "http" else "sqs"), parts.netloc.rpartition("@")[2]
    key = secret = None
    if connection is not None:
        key = connection.login or connection.extra.get("aws_access_key_id")
        secret = connection.password or connection.extra.get("aws_secret_access_key")
    if key is None and parts.username:
        key, secret = parts.username, parts.password
    region = region_name
    if region is None and connection is not None:
        region = connection.extra.get("region_name") or connection.extra.get("region")
    if region is not None:
        query["region"] = str(region)
    user = f"{quote(str(key), safe='')}:{quote(str(secret or ''), safe='')}@" if key else ""
    encoded = f"?{urlencode(query)}" if query else ""
    return f"{herald_scheme}://{user}{netloc}/{segments[0]}/{segments[1]}{encoded}"


def SqsSensorTrigger(
    sqs_queue: str,
    aws_conn_id: str | None = "aws_default",
    max_messages: int = 5,
    num_batches: int = 1,
    wait_time_seconds: int = 1,
    visibility_timeout: int | None = None,
    message_filtering: str | None = None,
    message_filtering_match_values: Any = None,
    message_filtering_config: Any = None,
    delete_message_on_reception: bool = True,
    waiter_delay: int = 60,
    region_name: str | None = None,
    verify: bool | str | None = None,
    botocore_config: dict[str, Any] | None = None,
) -> BaseEventTrigger:
    """Airflow's `SqsSensorTrigger` arguments, with their defaults, as a Herald SQS trigger.

    Args:
        sqs_queue: the queue URL (`https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE`,
            a local server's `http://HOST:PORT/ACCOUNT/QUEUE`, or Herald's `sqs://` forms).
        aws_conn_id: the AWS connection (keys, `region_name`, `endpoint_url`);
            when it is not defined, botocore's usual chain gives the keys, as in Airflow.
        max_messages: messages per ReceiveMessage call (1-10).
        num_batches: accepted; Herald makes one event per message, so how many
            receives Airflow folds into one event changes nothing (docs/airflow-triggers.md).
        wait_time_seconds: how long one ReceiveMessage long-polls (0-20).
        visibility_timeout: seconds a received message stays hidden.
        message_filtering: `literal`, `jsonpath` or `jsonpath-ext`; other messages are skipped.
        message_filtering_match_values: the values to match.
        message_filtering_config: the JSONPath expression.
        delete_message_on_reception: must be True: Herald deletes a message once its
            event is committed (False, leaving messages for the task to delete, is refused).
        waiter_delay: accepted; Herald long-polls again at once instead of sleeping.
        region_name: the AWS region (else the connection's `region_name`).
        verify: refused unless None (Herald verifies TLS with the system's certificates).
        botocore_config: refused unless empty.
    """
    if not delete_message_on_reception:
        raise ValueError(
            "delete_message_on_reception=False is not supported: Herald deletes a message only once its "
            "event is committed, so a message is never lost; remove the argument"
        )
    if verify is not None:
        raise ValueError("verify= is not supported: Herald verifies TLS with the system's certificate store")
    if botocore_config:
        raise ValueError("botocore_config= is not supported: Herald's SQS client retries with its own settings")
    for name, value in (("num_batches", num_batches), ("waiter_delay", waiter_delay)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    message_filter = (
        MessageFilter(message_filtering, message_filtering_match_values, message_filtering_config)
        if message_filtering is not None
        else None
    )
    connection = get_connection(aws_conn_id) if aws_conn_id else None
    url = herald_url(sqs_queue, connection, region_name)
    from herald.triggers.registry import scheme_of, trigger_class

    options: dict[str, Any] = {
        "max_messages": max_messages,
        "wait_time_seconds": wait_time_seconds,
        "apply_function": SqsMessageBatch(message_filter),
    }
    if visibility_timeout is not None:
        options["visibility_timeout"] = visibility_timeout
    return trigger_class(scheme_of(url)).from_url(url, **options)
