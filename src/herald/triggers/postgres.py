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

import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg.errors
from psycopg import sql
from psycopg.types.json import Jsonb

from herald.triggers.base import (
    BaseEventTrigger,
    BrokerOptions,
    BrokerPublisher,
    Message,
    ParsedOptions,
    parse_options,
)
from herald.triggers.urls import mask_url, shown_url

log = logging.getLogger("herald.triggers.postgres")

#: query options Herald reads itself; the others are libpq's (sslmode...)
DEFAULT_WAIT_SECONDS = 5.0
#: above this many rows (planner estimate) lag() returns the estimate instead of counting
COUNT_LIMIT = 100_000


@dataclass(frozen=True)
class PostgresOptions(BrokerOptions):
    """The options of a PostgreSQL queue trigger and publisher (URL query or keyword arguments).

    Query options that are not these are libpq's (`sslmode`...) and stay in the URL.

    Attributes:
        table: the queue table, `name` or `schema.name`.
        channel: the LISTEN/NOTIFY channel (default: the table name).
        create_table: create the table when missing.
        wait_seconds: how long a receive waits for a notification before looking
            at the table again anyway (for producers that insert without NOTIFY).
    """

    table: str = ""
    channel: str | None = None
    create_table: bool = True
    wait_seconds: float = DEFAULT_WAIT_SECONDS

    BROKER: ClassVar[str] = "PostgreSQL queue"
    PASSTHROUGH_QUERY: ClassVar[bool] = True


def _parse(url: str, options: dict[str, Any]) -> ParsedOptions[PostgresOptions]:
    """The options, and the libpq URL (`postgresql://`, Herald's options removed)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"{mask_url(url)!r} is not a PostgreSQL URL: expected postgres://USER@HOST:PORT/DB?table=T")
    parsed = parse_options(PostgresOptions, url, options)
    dsn = urlsplit(parsed.url)
    return dataclasses.replace(parsed, url=urlunsplit(("postgresql", dsn.netloc, dsn.path, dsn.query, "")))


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
    #: rows are claimed FOR UPDATE SKIP LOCKED: each triggerer gets others
    shareable = True

    def __init__(self, url: str, **options: Any) -> None:
        parsed = _parse(url, options)
        super().__init__(**parsed.common)
        o = parsed.options
        if not o.table:
            raise ValueError(f"a PostgreSQL queue trigger needs table=, got {mask_url(url)!r}")
        self.options = o
        self.dsn = parsed.url
        self.table = o.table
        self.channel = o.channel or o.table
        if len(self.channel.encode()) > 63:
            raise ValueError(f"channel {self.channel!r} is longer than PostgreSQL's 63 bytes; pass channel=")
        self.create_table = o.create_table
        self.wait_seconds = o.wait_seconds
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lag_conn: psycopg.AsyncConnection[Any] | None = None

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
            headers=headers or {},  # decoded once, by Message
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
            "url": shown_url(self.dsn, table=self.table),
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


class PostgresPublisher(BrokerPublisher):
    """Inserts a row into the queue table and NOTIFYs its channel, in one statement, on one connection per database.

    The table is created when missing, unless `create_table=false`.
    """

    options_class = PostgresOptions

    @classmethod
    def pool_key(cls, url: str) -> str:
        return _parse(url, {}).url

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def open(self) -> None:
        self._conn = await psycopg.AsyncConnection.connect(
            self.pool_key(self.url), autocommit=True, application_name="herald-publisher"
        )

    async def publish(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        options = _parse(url, {}).options
        table = options.table
        if not table:
            raise ValueError(f"{mask_url(url)!r} names no table: add ?table=NAME")
        channel = options.channel or table
        statement = sql.SQL(
            "WITH inserted AS (INSERT INTO {} (body, headers) VALUES (%s, %s) RETURNING id) "
            "SELECT pg_notify(%s, '') FROM inserted"
        ).format(_table_sql(table))
        params = (body, Jsonb(dict(headers)), channel)
        assert self._conn is not None
        try:
            await self._conn.execute(statement, params)
        except psycopg.errors.UndefinedTable:
            if not options.create_table:
                raise
            await _create_table(self._conn, table)
            await self._conn.execute(statement, params)
        except psycopg.OperationalError:
            # A connection the server dropped (restart, idle timeout): one fresh attempt.
            self._conn.pgconn.finish()
            await self.open()
            await self._conn.execute(statement, params)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
