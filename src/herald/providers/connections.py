"""Airflow connections as Airflow's provider triggers read them: `aws_default`, `kafka_default`, `redis_default`.

A connection is read from the environment by Herald's one reader
(`herald.triggers.urls.read_connection`): `HERALD_CONN_<ID>` first, then
`AIRFLOW_CONN_<ID>` (so a ported project keeps its variables), in either of
Airflow's forms:

- a URI: `aws://KEY:SECRET@/?region_name=us-east-1&endpoint_url=http%3A%2F%2F127.0.0.1%3A5005`
  (query parameters are the extras; `__extra__=<JSON>` holds them as JSON);
- JSON: `{"conn_type": "aws", "login": "KEY", "password": "SECRET", "extra": {"region_name": "us-east-1"}}`.

A Herald URL (`sqs+http://KEY:SECRET@127.0.0.1:5005?region=us-east-1`) is read
as a URI too: its scheme is the connection type, its query the extras.
Nothing is read at import time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from herald.triggers.urls import connection_variables, read_connection


@dataclass(frozen=True)
class Connection:
    """One connection's fields, as Airflow's `Connection` names them."""

    conn_id: str
    conn_type: str = ""
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    schema: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


def get_connection(conn_id: str) -> Connection | None:
    """Connection `conn_id` from the environment, or None when neither variable is set."""
    found = read_connection(conn_id)
    if found is None:
        return None
    name, value = found
    try:
        return parse_connection(conn_id, value)
    except ValueError as exc:
        raise ValueError(f"{name} is not a valid connection: {exc}") from None


def parse_connection(conn_id: str, value: str) -> Connection:
    """A connection from Airflow's URI or JSON form."""
    text = value.strip()
    if text.startswith("{"):
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("the JSON form must be an object")
        extra = data.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra) if extra.strip() else {}
        port = data.get("port")
        return Connection(
            conn_id=conn_id,
            conn_type=str(data.get("conn_type") or ""),
            host=data.get("host") or None,
            port=int(port) if port not in (None, "") else None,
            login=data.get("login") or None,
            password=data.get("password") or None,
            schema=data.get("schema") or None,
            extra=dict(extra),
        )
    parts = urlsplit(text)
    if not parts.scheme:
        raise ValueError("expected a URI such as aws://KEY:SECRET@/?region_name=us-east-1, or JSON")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    extras: dict[str, Any] = json.loads(query["__extra__"]) if "__extra__" in query else query
    return Connection(
        conn_id=conn_id,
        conn_type=parts.scheme.replace("-", "_"),
        host=unquote(parts.hostname) if parts.hostname else None,
        port=parts.port,
        login=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        schema=unquote(parts.path.lstrip("/")) or None,
        extra=dict(extras),
    )


def undefined(conn_id: str) -> ValueError:
    """The error of a connection a trigger needs and the environment does not define."""
    herald, airflow = connection_variables(conn_id)
    return ValueError(f"connection {conn_id!r} is not defined: set {airflow} (or {herald}) to its URI or JSON")
