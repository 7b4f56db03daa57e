"""Queue URLs: query options, connections from the environment, and masking secrets.

`read_connection` is the one reader of connections for all of Herald: broker
URLs (`conn_id=`), Airflow's provider triggers (`herald.providers.connections`)
and `BaseHook.get_connection` (`herald.airflow.connections`) all ask it, so the
variables looked at and their order (`HERALD_CONN_<ID>`, then Airflow's
`AIRFLOW_CONN_<ID>`) are the same everywhere.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# The one masking of URLs (password and sensitive query options), kept importable from here.
from herald.sdk.masking import mask_url

__all__ = [
    "connection_url",
    "connection_variables",
    "flag",
    "mask_url",
    "query_options",
    "read_connection",
    "shown_url",
    "with_connection",
]


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


def connection_variables(conn_id: str) -> tuple[str, str]:
    """The environment variables connection `conn_id` is read from, in order."""
    key = conn_id.upper()
    return f"HERALD_CONN_{key}", f"AIRFLOW_CONN_{key}"


def read_connection(conn_id: str) -> tuple[str, str] | None:
    """`(variable, value)` of connection `conn_id`: `HERALD_CONN_<ID>`, else `AIRFLOW_CONN_<ID>`; None if unset.

    The value is as the user wrote it: a URI, or Airflow's JSON form (`{"conn_type": ...}`).
    """
    for name in connection_variables(conn_id):
        value = os.environ.get(name)
        if value and value.strip():
            return name, value.strip()
    return None


def connection_url(conn_id: str) -> str:
    """The URL of connection `conn_id` (see `read_connection`), for a broker URL's `conn_id`."""
    found = read_connection(conn_id)
    if found is None:
        herald, airflow = connection_variables(conn_id)
        raise ValueError(f"connection {conn_id!r} is not defined: set {herald} (or {airflow}) to its URL")
    name, value = found
    if value.startswith("{"):
        raise ValueError(
            f"{name} holds a connection in JSON form; a queue URL's conn_id needs its URI form, "
            "for example sqs+http://KEY:SECRET@127.0.0.1:5005?region=us-east-1"
        )
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
    netloc = conn.netloc
    if not conn.hostname and target.hostname and target.hostname != "_":
        # A connection holding only credentials (aws://KEY:SECRET@) keeps the URL's own host.
        netloc = target.netloc.rpartition("@")[2]
        if conn.username is not None:
            netloc = f"{conn.netloc.rpartition('@')[0]}@{netloc}"
    return urlunsplit((scheme, netloc, path, urlencode(query), ""))


def shown_url(url: str, **reads: object) -> str:
    """`url` as a watcher shows it: credentials masked, and what it reads (stream, queue, table...) kept.

    A trigger's parsed URL has Herald's options taken out of its query, so
    `redis://h:6379/0?stream=orders&group=g` would show as `redis://h:6379/0`,
    which says nothing of which stream. `reads` (the options that name what is
    consumed: `stream="orders"`, `group="g"`) go back into the query, before the
    client library's own options; None and empty values are left out.
    """
    parts = urlsplit(url)
    named = [
        (k, ",".join(map(str, v)) if isinstance(v, list | tuple) else str(v))
        for k, v in reads.items()
        if v is not None and v != "" and v != [] and v != ()
    ]
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in reads]
    query = urlencode(named + kept, safe=",/:#*>")
    return mask_url(urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment)))
