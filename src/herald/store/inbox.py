"""The publish inbox: a SQLite file of its own where other processes commit local:// messages while Herald runs.

Why a second file: SQLite lets one connection write a database at a time, and
the running Herald writes the metadata database all the time (events, runs,
tries, results). A publisher that commits there, itself or through Herald,
waits for Herald's writes; one publishing one message at a time got ~100-270
messages/s through. The inbox (`NAME.db.inbox` beside `NAME.db`, 0600, in WAL
mode with its own `-wal` and `-shm`) is written by publishers only: a publish
is one ~50 us transaction that waits for no one but another publisher. The
running Herald reads it and moves its rows into `local_queue_message` in
batches (`herald.triggerer.inbox`).

Exactly once across the two files: the inbox's ids only grow (AUTOINCREMENT:
never reused, even after its rows are dropped), and each move stores the
highest id it moved in the metadata database, in the transaction that inserts
the rows (`store.local_queue.move_in`, table `local_queue_inbox`, keyed by the
inbox's identity, a random id made with the file). A move interrupted by a
crash is made again from that mark. Rows are dropped from the inbox only once
moved, and not on every move (see `drop`).

Writers take turns on an advisory lock (`flock` on `NAME.db.inbox.lock`), not
through SQLite's busy handler, which sleeps 1, 2, 5, 10... ms between tries:
the kernel hands the lock over as soon as it is released. The running Herald
takes the same lock to drop moved rows and, when it stops, to make its last
move after the last publisher that saw it running has committed.

Durability: `synchronous=NORMAL` in WAL mode, as the metadata database. A commit
survives the publisher's or Herald's process being killed; an operating system
crash or power cut may lose the last commits (`FULL` would fsync every commit:
~2.8 ms each on the benchmark machine, against ~30 us).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from herald.store.files import PRIVATE_FILE, private_database
from herald.store.local_queue import Publish

#: the inbox file's name beside the database file's
SUFFIX = ".inbox"
#: the advisory lock's file beside the inbox
LOCK_SUFFIX = ".lock"
#: `PRAGMA user_version` of the inbox this code reads and writes
SCHEMA_VERSION = 1

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS inbox_message ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " queue TEXT NOT NULL,"
    " body BLOB NOT NULL,"
    " headers TEXT NOT NULL,"
    " created_at REAL NOT NULL,"
    " publish_key TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS inbox_identity (identity TEXT NOT NULL)",
)
_INSERT = "INSERT INTO inbox_message (queue, body, headers, created_at, publish_key) VALUES (?, ?, ?, ?, ?)"


class InboxError(Exception):
    """The inbox file cannot be used (another schema version, not an inbox)."""


@dataclass(frozen=True, slots=True)
class InboxRow:
    """One message committed to the inbox and not moved yet, as stored (a move copies it without decoding it)."""

    id: int
    queue: str
    body: bytes
    #: its headers as the inbox stores them: `json.dumps` of a dict of strings
    headers_json: str
    #: when it was published (`time.time()`)
    published_at: float
    publish_key: str

    @property
    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = json.loads(self.headers_json)
        return headers

    @property
    def created_at(self) -> datetime:
        return datetime.fromtimestamp(self.published_at, UTC)


def inbox_path(database_url: str) -> str | None:
    """The inbox of the SQLite database at `database_url`, or None (in memory, a `file:` URI: no inbox)."""
    from sqlalchemy.engine import make_url

    database = make_url(database_url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return os.path.realpath(database) + SUFFIX


class Inbox:
    """One thread's handle on an inbox file: its SQLite connection and its lock.

    A connection and a lock per thread: `flock` excludes open files, not threads,
    so two threads sharing one file descriptor would not exclude each other.
    """

    def __init__(self, path: str, conn: sqlite3.Connection, lock_fd: int, identity: str) -> None:
        self.path = path
        self.identity = identity
        self._conn = conn
        self._lock_fd = lock_fd

    @classmethod
    def create(cls, path: str) -> Inbox:
        """Open the inbox at `path`, creating it (0600, WAL, its schema and identity) if missing (Herald starting)."""
        private_database(Path(path))
        conn = _connect(path, create=True)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version not in (0, SCHEMA_VERSION):
                    raise InboxError(f"{path} holds inbox schema {version}, this Herald reads {SCHEMA_VERSION}")
                for statement in _SCHEMA:
                    conn.execute(statement)
                if conn.execute("SELECT count(*) FROM inbox_identity").fetchone()[0] == 0:
                    conn.execute("INSERT INTO inbox_identity (identity) VALUES (?)", (uuid.uuid4().hex,))
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return cls._with_lock(path, conn)
        except BaseException:
            conn.close()
            raise

    @classmethod
    def open(cls, path: str) -> Inbox | None:
        """Open the existing inbox at `path` (a publisher): None if there is none, InboxError if not one we know."""
        try:
            conn = _connect(path, create=False)
        except sqlite3.OperationalError:
            return None  # no such file: no Herald has made it
        try:
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                raise InboxError(f"{path} is not an inbox: {exc}") from exc
            if version != SCHEMA_VERSION:
                raise InboxError(f"{path} holds inbox schema {version}, this code writes {SCHEMA_VERSION}")
            return cls._with_lock(path, conn)
        except BaseException:
            conn.close()
            raise

    @classmethod
    def _with_lock(cls, path: str, conn: sqlite3.Connection) -> Inbox:
        [identity] = conn.execute("SELECT identity FROM inbox_identity").fetchone()
        lock_fd = os.open(path + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
        return cls(path, conn, lock_fd, str(identity))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the inbox's advisory lock (the writers' turn) for the block."""
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def put(self, publish: Publish) -> None:
        """Commit a publisher's messages (with the lock held: see `locked`)."""
        # What Herald could not move fails here, in the publisher, and not at every move.
        if not all(isinstance(body, bytes | bytearray | memoryview) for body in publish.bodies):
            raise TypeError("a local:// message body must be bytes")
        headers = json.dumps({str(k): str(v) for k, v in publish.headers.items()})
        now = time.time()
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if len(publish.bodies) == 1:
                conn.execute(_INSERT, (publish.queue, publish.bodies[0], headers, now, publish.keys[0]))
            else:
                conn.executemany(
                    _INSERT,
                    [
                        (publish.queue, body, headers, now, key)
                        for body, key in zip(publish.bodies, publish.keys, strict=True)
                    ],
                )
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    def take(self, after_id: int, limit: int) -> list[InboxRow]:
        """Up to `limit` messages with an id above `after_id`, oldest first (a read: no lock)."""
        rows = self._conn.execute(
            "SELECT id, queue, body, headers, created_at, publish_key FROM inbox_message"
            " WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [InboxRow(i, q, b, h, c, k) for i, q, b, h, c, k in rows]

    def drop(self, up_to: int) -> None:
        """Delete the messages moved already, up to id `up_to` (with the lock held)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM inbox_message WHERE id <= ?", (up_to,))
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the connection and the lock's file, once (a number closed twice may be another's by then)."""
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        fd, self._lock_fd = self._lock_fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    def detach(self) -> None:
        """In a forked child: forget the parent's connection and lock without closing them."""
        _inherited.append(self._conn)
        self._lock_fd = -1


#: connections a forked child inherited: kept unclosed (SQLite must not close a parent's connection in a child)
_inherited: list[sqlite3.Connection] = []


def _connect(path: str, *, create: bool) -> sqlite3.Connection:
    mode = "rwc" if create else "rw"
    conn = sqlite3.connect(
        f"file:{_uri_path(path)}?mode={mode}", uri=True, isolation_level=None, check_same_thread=False, timeout=30
    )
    try:
        # WAL + NORMAL: a commit survives a process crash without an fsync each (see the module's docstring).
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn
    except BaseException:
        conn.close()
        raise


def _uri_path(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")


__all__ = ["SUFFIX", "Inbox", "InboxError", "InboxRow", "inbox_path"]
