"""`Connection` and `BaseHook.get_connection`: connection details from the environment."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from herald.airflow.exceptions import AirflowNotFoundException
from herald.sdk.masking import is_sensitive, mask_secret
from herald.triggers.urls import read_connection

__all__ = ["BaseHook", "Connection"]


class Connection:
    """Where and how to reach an external system; secrets are masked in its repr.

    Defined in the environment as `HERALD_CONN_<ID>` or `AIRFLOW_CONN_<ID>`, in URI form
    (`postgres://user:pass@host:5432/db?sslmode=require`) or JSON form
    (`{"conn_type": "postgres", "host": ..., "login": ..., "password": ..., "port": ...,
    "schema": ..., "extra": {...}}`).
    """

    def __init__(
        self,
        conn_id: str | None = None,
        conn_type: str | None = None,
        description: str | None = None,
        host: str | None = None,
        login: str | None = None,
        password: str | None = None,
        schema: str | None = None,
        port: int | None = None,
        extra: str | dict[str, Any] | None = None,
        uri: str | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.description = description
        self.conn_type = conn_type
        self.host = host
        self.login = login
        self.password = password
        self.schema = schema
        self.port = port
        self.extra = json.dumps(extra) if isinstance(extra, dict) else extra
        if uri is not None:
            self._parse(uri)

    def _parse(self, uri: str) -> None:
        scheme, rest = uri.split("://", 1) if "://" in uri else (uri.rstrip(":"), "")
        parts = urlsplit("//" + rest)
        self.conn_type = scheme.replace("-", "_")
        host = unquote(parts.hostname or "")
        self.host = host or None
        self.login = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.port = parts.port
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        self.schema = unquote(path) or None
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if "__extra__" in query:
            self.extra = query["__extra__"]
        elif query:
            self.extra = json.dumps(query)

    @property
    def extra_dejson(self) -> dict[str, Any]:
        """`extra` parsed as JSON ({} when empty)."""
        if not self.extra:
            return {}
        try:
            value = json.loads(self.extra)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def get_uri(self) -> str:
        """The connection as a URI."""
        auth = ""
        if self.login or self.password:
            auth = (
                quote(self.login or "", safe="") + (":" + quote(self.password, safe="") if self.password else "") + "@"
            )
        host = quote(self.host or "", safe="")
        port = f":{self.port}" if self.port else ""
        schema = "/" + quote(self.schema, safe="") if self.schema else ""
        query = "?" + urlencode(self.extra_dejson) if self.extra_dejson else ""
        return f"{(self.conn_type or '').replace('_', '-')}://{auth}{host}{port}{schema}{query}"

    @classmethod
    def get(cls, conn_id: str) -> Connection:
        """The connection `conn_id` from HERALD_CONN_<ID> or AIRFLOW_CONN_<ID> (its password is masked in logs)."""
        conn = cls._from_env(conn_id)
        mask_secret(conn.password)
        for key, value in conn.extra_dejson.items():
            if is_sensitive(key):
                mask_secret(value)
        return conn

    @classmethod
    def _from_env(cls, conn_id: str) -> Connection:
        found = read_connection(conn_id)
        if found is None:
            raise AirflowNotFoundException(f"The conn_id `{conn_id}` isn't defined")
        value = found[1]
        if value.startswith("{"):
            data = json.loads(value)
            return cls(
                conn_id=conn_id,
                conn_type=data.get("conn_type"),
                description=data.get("description"),
                host=data.get("host"),
                login=data.get("login"),
                password=data.get("password"),
                schema=data.get("schema"),
                port=int(data["port"]) if data.get("port") is not None else None,
                extra=data.get("extra"),
            )
        return cls(conn_id=conn_id, uri=value)

    def __repr__(self) -> str:
        return (
            f"Connection(conn_id={self.conn_id!r}, conn_type={self.conn_type!r}, host={self.host!r}, "
            f"login={self.login!r}, password={'***' if self.password else None!r}, port={self.port!r}, "
            f"schema={self.schema!r})"
        )


class BaseHook:
    """The base of hooks; `BaseHook.get_connection(conn_id)` is what DAGs use."""

    @classmethod
    def get_connection(cls, conn_id: str) -> Connection:
        """The connection `conn_id` (see `Connection.get`)."""
        return Connection.get(conn_id)
