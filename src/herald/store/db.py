"""The engine, its SQLite settings, and a way to run blocking queries from asyncio."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError, StatementError
from sqlalchemy.pool import NullPool

from herald.store.files import private_database
from herald.store.storable import json_loads

T = TypeVar("T")


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine for `url`: SQLite in WAL mode with a busy timeout, or PostgreSQL.

    `pool_size=0` keeps no connection open between uses (one-shot commands).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            # 0600 before SQLite first opens it: its -wal and -shm files then get the same mode
            private_database(Path(parsed.database))
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            poolclass=NullPool if pool_size == 0 else None,
            json_deserializer=json_loads,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, decide when transactions begin, so that
            # BEGIN IMMEDIATE takes the write lock up front (no deadlock on upgrade).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL stays consistent across a process crash; only an OS crash
            # may lose the last commits, which brokers then redeliver (dedupe holds).
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # No server-side prepared statements (psycopg prepares a statement run 5 times): a
    # prepared statement may keep a generic plan made when its tables were small, and
    # the lookups by `id = ANY(...)` of a scheduler pass became 3 to 8 times slower as
    # the history grew (the database's CPU per run 2.4x, benchmarks/cluster_cycle.py
    # with 8,000 runs). Unprepared, each statement is planned for the data it meets;
    # psycopg still parses each statement text once.
    connect_args = {"prepare_threshold": None}
    if pool_size == 0:
        return create_engine(url, poolclass=NullPool, json_deserializer=json_loads, connect_args=connect_args)
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        json_deserializer=json_loads,
        connect_args=connect_args,
    )


def refused_row(exc: BaseException) -> bool:
    """True when a statement failed for what it carried (a value the database refuses), not for the database.

    Connection and lock problems (`OperationalError`, `InterfaceError`) are the
    database's; the same statement may succeed later. Anything else a statement
    raised (a value too long, not encodable, refused by a constraint) will fail
    again with the same values.
    """
    return isinstance(exc, StatementError) and not isinstance(exc, OperationalError | InterfaceError)


def ping(engine: Engine) -> None:
    """Raise unless the database answers a query (the API's health check)."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def is_sqlite(engine: Engine) -> bool:
    """True for the embedded SQLite database."""
    return engine.dialect.name == "sqlite"


class FairLock:
    """A lock taken in the order it was asked for (`threading.Lock` lets its releaser take it again first).

    A thread that releases it and asks again at once - the database thread
    running queued writes one after the other - would otherwise starve a thread
    waiting for it (the publish inbox's moves).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._next = 0
        self._serving = 0

    def __enter__(self) -> None:
        with self._cond:
            ticket = self._next
            self._next += 1
            while self._serving != ticket:
                self._cond.wait()

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()


class Database:
    """The metadata database as the async processes use it.

    Queries are plain blocking SQLAlchemy, run on a small thread pool so the
    event loop keeps serving brokers. SQLite gets one thread: one writer at a
    time is all it allows, and queueing in-process is cheaper than lock retries.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        threads = 1 if is_sqlite(self.engine) else 4
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="herald-db")
        #: on SQLite, held by the database thread for each call and by `write_here`: the
        #: process's writers take turns in-process instead of through SQLite's busy
        #: handler, which sleeps between tries
        self._turns: FairLock | None = FairLock() if threads == 1 else None

    @property
    def is_sqlite(self) -> bool:
        """True for the embedded SQLite database."""
        return is_sqlite(self.engine)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` on the database thread pool."""
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, **kwargs)
        if self._turns is not None:
            call = functools.partial(self._in_turn, call)
        return await loop.run_in_executor(self._pool, call)

    def _in_turn(self, call: Callable[[], T]) -> T:
        assert self._turns is not None
        with self._turns:
            return call()

    def write_here(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the calling thread, in turn with the database thread's calls.

        For a thread whose writes must not wait behind the database thread's queue,
        only behind the call it runs now (the publish inbox's moves).
        """
        if self._turns is None:
            return fn(*args)
        with self._turns:
            return fn(*args)

    def close(self) -> None:
        """Stop the threads and close every connection."""
        self._pool.shutdown(wait=True)
        self.engine.dispose()
