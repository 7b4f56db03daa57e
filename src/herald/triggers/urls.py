"""Queue URLs: query options, connections from `HERALD_CONN_<ID>`, and masking secrets."""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def query_options(url: str) -> dict[str, str]:
    """The query string of `url` as a dict (last value wins)."""
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def flag(value: object, name: str = "option") -> bool:
    """A true/false option as a URL query or a keyword gives it: `1/0`, `true/false`, `yes/no`, `on/off`."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"option {name}={value!r} must be true or false")


def mask_url(url: str) -> str:
    """`url` with its password replaced by `***`, safe for logs, the API and the UI."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def connection_url(conn_id: str) -> str:
    """The URL of connection `conn_id`, from the environment variable `HERALD_CONN_<ID>`."""
    name = f"HERALD_CONN_{conn_id.upper()}"
    value = os.environ.get(name)
    if not value:
        raise ValueError(f"connection {conn_id!r} is not defined: set {name} to its URL")
    return value


def with_connection(url: str, conn_id: str | None) -> str:
    """Fill `url`'s host and credentials from connection `conn_id`, keeping its path and query.

    The connection's query options are defaults; the trigger URL's own win. So a
    DAG file holds `sqs://_/000000000000/orders` and `HERALD_CONN_AWS_DEFAULT`
    holds the endpoint and keys.
    """
    if conn_id is None:
        return url
    conn = urlsplit(connection_url(conn_id))
    target = urlsplit(url)
    query = {**dict(parse_qsl(conn.query)), **dict(parse_qsl(target.query))}
    scheme = target.scheme or conn.scheme
    if conn.scheme.startswith(target.scheme) and conn.scheme != target.scheme:
        scheme = conn.scheme  # sqs + a connection saying sqs+http
    path = target.path if target.path.strip("/") else conn.path  # "redis://_/?stream=s": the connection's db
    return urlunsplit((scheme, conn.netloc, path, urlencode(query), ""))
