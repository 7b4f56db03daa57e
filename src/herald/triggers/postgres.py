"""`postgres://USER@HOST:PORT/DB?table=T`: a queue table in any PostgreSQL database.

Producers insert rows (`publish` does, and NOTIFYs the channel named after the
table). The trigger LISTENs on that channel to wake up, and claims rows with
`SELECT ... FOR UPDATE SKIP LOCKED` in a transaction it keeps open while the
triggerer commits their events; `ack` then deletes the rows and commits that
transaction. Several triggerers can consume one table: each claims other rows.

The queue usually lives in another database than Herald's metadata, so the
two commits are separate. A crash between them rolls the claim back (the rows
are still there, unlocked) and the redelivered rows carry the same
`table:id` dedupe key, so none becomes a second event.

The table (created when missing unless `create_table=false`)::

    id bigserial PRIMARY KEY, body bytea NOT NULL,
    headers jsonb NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL DEFAULT now()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg
import psycopg.errors
from psycopg import sql
from psycopg.types.json import Jsonb

from herald.triggers.base import BaseEventTrigger, Message
from herald.triggers.urls import flag, mask_url, query_options, with_connection

log = logging.getLogger("herald.triggers.postgres")

#: query options Herald reads itself; the others are libpq's (sslmode...)
_OPTIONS = ("table", "channel", "create_table", "wait_seconds")
DEFAULT_WAIT_SECONDS = 5.0
#: above this many rows (planner estimate) lag() returns the estimate instead of counting
COUNT_LIMIT = 100_000


def _split_url(url: str) -> tuple[str, dict[str, str]]:
    """The libpq URL (Herald's options removed) and Herald's options."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"{mask_url(url)!r} is not a PostgreSQL URL: expected postgres://USER@HOST:PORT/DB?table=T")
    query = query_options(url)
    ours = {k: v for k, v in query.items() if k in _OPTIONS}
    rest = {k: v for k, v in query.items() if k not in _OPTIONS}
    return urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(rest), "")), ours


def _table_sql(table: str) -> sql.Identifier:
    """`schema.table` or `table` as a quoted identifier."""
    return sql.Identifier(*table.split(".", 1))


async def _create_table(conn: psycopg.AsyncConnection[Any], table: str) -> None:
    """Create the queue table unless it exists (run in a transaction of its own)."""
    statement = sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, body bytea NOT NULL, "
        "headers jsonb NOT NULL DEFAULT '{{}}', created_at timestamptz NOT NULL DEFAULT now())"
    ).format(_table_sql(table))
    try:
        async with conn.transaction():
            await conn.execute(statement)
    except psycopg.errors.UniqueViolation:
        pass  # created at the same instant by another process: IF NOT EXISTS is not atomic


class PostgresTrigger(BaseEventTrigger):
    """Consumes a queue table: LISTEN to wake, claim with SKIP LOCKED, delete after the commit.

    Args:
        dsn: `postgresql://USER[:PASSWORD]@HOST:PORT/DB` (libpq options allowed in the query).
        table: the queue table, `name` or `schema.name`.
        channel: the LISTEN/NOTIFY channel (default: the table name).
        create_table: create the table when missing.
        wait_seconds: how long a receive waits for a notification before looking
            at the table again anyway (for producers that insert without NOTIFY).
    """

    scheme = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        table: str,
        channel: str | None = None,
        create_table: bool | str = True,
        wait_seconds: float = DEFAULT_WAIT_SECONDS,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if not table:
            raise ValueError(f"a PostgreSQL queue trigger needs table=, got {mask_url(dsn)!r}")
        self.dsn = dsn
        self.table = table
        self.channel = channel or table
        if len(self.channel.encode()) > 63:
            raise ValueError(f"channel {self.channel!r} is longer than PostgreSQL's 63 bytes; pass channel=")
        self.create_table = flag(create_table, "create_table")
        self.wait_seconds = float(wait_seconds)
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lag_conn: psycopg.AsyncConnection[Any] | None = None

    @classmethod
    def from_url(cls, url: str, conn_id: str | None = None, **options: Any) -> PostgresTrigger:
        dsn, ours = _split_url(with_connection(url, conn_id))
        kwargs: dict[str, Any] = {"table": ours.get("table", "")}
        if ours.get("channel"):
            kwargs["channel"] = ours["channel"]
        if "create_table" in ours:
            kwargs["create_table"] = flag(ours["create_table"], "create_table")
        if ours.get("wait_seconds"):
            kwargs["wait_seconds"] = float(ours["wait_seconds"])
        return cls(dsn, **{**kwargs, **options})

    @property
    def application_name(self) -> str:
        """The `application_name` of the trigger's connection (in pg_stat_activity)."""
        return f"herald:{self.table}"[:63]

    async def open(self) -> None:
        self._conn = await psycopg.AsyncConnection.connect(self.dsn, application_name=self.application_name)
        if self.create_table:
            await _create_table(self._conn, self.table)
        await self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        await self._conn.commit()

    async def receive(self, max_messages: int) -> list[Message]:
        conn = self._require_conn()
        rows = await self._claim(conn, max_messages)
        if not rows:
            # Notifications arrive only between transactions: end the empty claim first.
            # One sent meanwhile is kept by psycopg and ends the wait at once.
            await conn.rollback()
            async for _ in conn.notifies(timeout=self.wait_seconds, stop_after=1):
                pass
            rows = await self._claim(conn, max_messages)
            if not rows:
                await conn.rollback()
                return []
        # The claim's transaction stays open, holding the row locks, until ack or close.
        return [self._message(*row) for row in rows]

    async def _claim(self, conn: psycopg.AsyncConnection[Any], limit: int) -> list[tuple[Any, ...]]:
        query = sql.SQL(
            "SELECT id, body, headers, created_at FROM {} ORDER BY id FOR UPDATE SKIP LOCKED LIMIT %s"
        ).format(_table_sql(self.table))
        cursor = await conn.execute(query, (limit,))
        return list(await cursor.fetchall())

    def _message(self, row_id: int, body: bytes, headers: Any, created_at: Any) -> Message:
        return Message(
            body=bytes(body),
            dedupe_key=f"{self.table}:{row_id}",
            headers={str(k): v if isinstance(v, str) else str(v) for k, v in (headers or {}).items()},
            metadata={
                "broker": "postgres",
                "table": self.table,
                "message_id": int(row_id),
                "published_at": created_at.isoformat() if created_at is not None else None,
            },
            handle=int(row_id),
        )

    async def ack(self, messages: list[Message]) -> None:
        """Delete the rows and commit the claim (rows claimed but not in `messages` are released)."""
        conn = self._require_conn()
        if messages:
            await conn.execute(
                sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(_table_sql(self.table)),
                ([m.handle for m in messages],),
            )
        await conn.commit()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        lag_conn, self._lag_conn = self._lag_conn, None
        for c in (conn, lag_conn):
            if c is not None:
                # Closing rolls back an open claim: its rows are unlocked for the next receive.
                with contextlib.suppress(Exception):
                    await c.close()

    async def lag(self) -> int | None:
        """Rows in the table (the planner's estimate once there are very many)."""
        if self._conn is None:
            return None
        if self._lag_conn is None or self._lag_conn.closed:
            self._lag_conn = await psycopg.AsyncConnection.connect(
                self.dsn, application_name=f"herald-lag:{self.table}"[:63], autocommit=True
            )
        conn = self._lag_conn
        qualified = _table_sql(self.table).as_string(conn)
        cursor = await conn.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", (qualified,))
        row = await cursor.fetchone()
        if row is None:
            return None
        if row[0] is not None and row[0] > COUNT_LIMIT:
            return int(row[0])
        cursor = await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_table_sql(self.table)))
        counted = await cursor.fetchone()
        return int(counted[0]) if counted else None

    def describe(self) -> dict[str, Any]:
        return {
            "url": mask_url(self.dsn),
            "broker": "postgres",
            "table": self.table,
            "channel": self.channel,
            "create_table": self.create_table,
            "wait_seconds": self.wait_seconds,
        }

    def _require_conn(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            raise ConnectionError("the PostgreSQL queue trigger is not connected")
        return self._conn


# -- publishing ----------------------------------------------------------------------------

#: one autocommit connection per database URL, with the event loop it belongs to
_publishers: dict[str, tuple[asyncio.AbstractEventLoop, psycopg.AsyncConnection[Any]]] = {}


async def _publisher(dsn: str) -> psycopg.AsyncConnection[Any]:
    loop = asyncio.get_running_loop()
    cached = _publishers.get(dsn)
    if cached is not None:
        owner, conn = cached
        if owner is loop and not conn.closed:
            return conn
        if owner is not loop:
            conn.pgconn.finish()  # its loop is gone: close the socket without awaiting
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, application_name="herald-publisher")
    _publishers[dsn] = (loop, conn)
    return conn


async def publish(url: str, body: bytes, headers: dict[str, str] | None = None) -> None:
    """Insert a row into the queue table of `url` and NOTIFY its channel, in one statement.

    The table is created when missing, unless `create_table=false`.
    """
    dsn, ours = _split_url(url)
    table = ours.get("table")
    if not table:
        raise ValueError(f"{mask_url(url)!r} names no table: add ?table=NAME")
    channel = ours.get("channel") or table
    statement = sql.SQL(
        "WITH inserted AS (INSERT INTO {} (body, headers) VALUES (%s, %s) RETURNING id) "
        "SELECT pg_notify(%s, '') FROM inserted"
    ).format(_table_sql(table))
    params = (body, Jsonb(dict(headers or {})), channel)
    conn = await _publisher(dsn)
    try:
        await conn.execute(statement, params)
    except psycopg.errors.UndefinedTable:
        if not flag(ours.get("create_table", True), "create_table"):
            raise
        await _create_table(conn, table)
        await conn.execute(statement, params)
    except psycopg.OperationalError:
        # A connection the server dropped (restart, idle timeout): one fresh attempt.
        _publishers.pop(dsn, None)
        conn.pgconn.finish()
        await (await _publisher(dsn)).execute(statement, params)


async def close_publishers() -> None:
    """Close the publishing connections of the running event loop (tests, shutdown)."""
    loop = asyncio.get_running_loop()
    for dsn, (owner, conn) in list(_publishers.items()):
        if owner is loop:
            del _publishers[dsn]
            with contextlib.suppress(Exception):
                await conn.close()
