"""Wake-ups between processes, so that nothing sleeps a fixed time on the hot path.

A process that commits work for another (a published local:// message, events
for the scheduler, task tries for the workers, results for the scheduler)
notifies a channel: "local:QUEUE", "scheduler", "workers", "replay", "watchers" or "triggers". Waiters wake at
once. A lost wake-up costs only latency: every waiter also re-checks the
database by itself (`Recheck`), soon after it last had work and less often the
longer it stays idle.

- On PostgreSQL the channel is `pg_notify('herald_KIND', channel)`, sent inside
  the committing transaction (delivered on commit) and heard by every process,
  on any machine, that LISTENs to that kind (`scheduler`, `workers`, `local`...):
  a process hears only the kinds it waits for, so a worker is not woken by each
  published message nor a scheduler by each claim.
- On SQLite (one machine, one Herald process tree) it is a datagram on a Unix
  socket named after the database, 0600 in a 0700 folder (`socket_path`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import socket
import stat
import tempfile
from collections import defaultdict

from sqlalchemy import Connection, text

log = logging.getLogger("herald.notify")

SCHEDULER = "scheduler"
WORKERS = "workers"
#: dead letters were marked for replay (heard by the triggerers)
REPLAY = "replay"
#: a watcher was paused or resumed (heard by the triggerers)
WATCHERS = "watchers"
#: a try deferred on a trigger a triggerer runs (heard by the triggerers)
TRIGGERS = "triggers"
#: the PostgreSQL channels are this, `_`, and the kind of Herald channel (`pg_channel`)
PG_CHANNEL = "herald"

#: seconds from a waiter's last wake-up (or last find) to its first re-check without one
RECHECK_FIRST = 2.0
#: the longest an idle waiter goes without re-checking the database by itself
RECHECK_LONGEST = 30.0


class Recheck:
    """How long a waiter sleeps before it re-checks the database without a wake-up.

    The re-check only covers a lost wake-up (a datagram dropped from a full
    buffer, a LISTEN connection between two reconnections): work normally comes
    with its wake-up, whenever it comes. So the first re-check comes `first`
    seconds after the waiter last had work, and every re-check that finds
    nothing doubles the next wait, up to `longest`. An idle Herald with many
    waiters then queries a few times a minute instead of each waiter every two
    seconds, and a busy one still catches a lost wake-up within `first`.
    """

    def __init__(self, first: float = RECHECK_FIRST, longest: float = RECHECK_LONGEST) -> None:
        self.first = first
        self.longest = max(first, longest)
        self._next = first

    @property
    def wait(self) -> float:
        """Seconds to sleep before the next re-check, unless woken first."""
        return self._next

    def found_nothing(self) -> None:
        """A re-check came up empty: wait twice as long for the next one (up to `longest`)."""
        self._next = min(self.longest, self._next * 2)

    def reset(self) -> None:
        """A wake-up came, or a re-check found work: re-check soon again."""
        self._next = self.first


async def wait_for_wake_up(event: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` is set or `timeout` seconds pass; True when it was set."""
    if event.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
    return event.is_set()


def is_postgres(database_url: str) -> bool:
    """True for a PostgreSQL URL (any driver)."""
    return database_url.startswith(("postgresql", "postgres:"))


#: the longest path a Unix socket address holds (`sun_path` is 108 bytes, NUL included)
SUN_PATH_MAX = 107


def socket_path(database_url: str, suffix: str = ".sock") -> str:
    """Where the wake-up socket of the SQLite database at `database_url` lives.

    Another socket of the same Herald (the publish inbox's socket of
    `herald.triggerer.inbox`) takes another `suffix`, beside it.

    Next to the database when its folder is private to this user (HERALD_HOME is
    made 0700), else - a database in a shared folder, or a path too long for a
    Unix socket address - in a 0700 folder of this user under the temporary
    directory. Either way no other local user can reach the socket, nor put a
    file of theirs in its place. Named after the database file itself, however
    its URL is spelled, so every process of one Herald finds the same socket.
    """
    from sqlalchemy.engine import make_url

    database = make_url(database_url).database or database_url
    if database == ":memory:" or database.startswith("file:"):
        key = database_url
    else:
        key = os.path.realpath(database)
        folder, name = os.path.split(key)
        beside = os.path.join(folder, f"{name}{suffix}")
        if _private(folder) and len(os.fsencode(beside)) <= SUN_PATH_MAX:
            return beside
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return os.path.join(_runtime_dir(), f"herald-{digest}{suffix}")


def _private(folder: str) -> bool:
    """True when `folder` is a real folder of this user that nobody else may enter."""
    try:
        info = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


@functools.cache
def _runtime_dir() -> str:
    """`$TMPDIR/herald-<uid>`, 0700 and this user's; a fresh private folder if someone else holds that name."""
    base = tempfile.gettempdir()
    if len(os.fsencode(base)) > SUN_PATH_MAX - 40:
        base = "/tmp"
    folder = os.path.join(base, f"herald-{os.getuid()}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    with contextlib.suppress(OSError):
        info = os.lstat(folder)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
            if info.st_mode & 0o077:
                os.chmod(folder, 0o700)
            return folder
    # Another user made (or linked) that name first: wake-ups across processes then fall
    # back to each waiter's periodic re-check, which costs only latency.
    log.warning("%s is not a private folder of this user; wake-ups use a folder of this process", folder)
    return tempfile.mkdtemp(prefix="herald-", dir=base)


def local_channel(queue: str) -> str:
    """The channel woken when a message is published to `local://queue`."""
    return f"local:{queue}"


def pg_channel(channel: str) -> str:
    """The PostgreSQL channel that carries `channel`: one per kind (`herald_local` for every local:// queue)."""
    return f"{PG_CHANNEL}_{channel.partition(':')[0]}"


def notify_in(conn: Connection, *channels: str) -> bool:
    """Notify from inside a transaction, delivered when it commits.

    Returns False on SQLite, where the caller must call `notify` after the commit.
    """
    if conn.dialect.name != "postgresql":
        return False
    for channel in channels:
        conn.execute(_NOTIFY, {"c": pg_channel(channel), "p": channel})
    return True


_NOTIFY = text("SELECT pg_notify(:c, :p)")


def notify(database_url: str, *channels: str) -> None:
    """Wake the listeners of `channels` after a commit (best effort, never raises)."""
    if is_postgres(database_url):
        _pg_notify(database_url, channels)
        return
    path = socket_path(database_url)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for channel in channels:
            # Nobody listening, or the listener's buffer full: the waiter's
            # fallback poll picks the change up.
            with contextlib.suppress(OSError):
                sock.sendto(channel.encode(), path)


def _pg_notify(database_url: str, channels: tuple[str, ...]) -> None:
    import psycopg

    try:
        with psycopg.connect(_libpq_url(database_url), autocommit=True, connect_timeout=5) as conn:
            for channel in channels:
                conn.execute("SELECT pg_notify(%s, %s)", (pg_channel(channel), channel))
    except Exception as exc:  # a wake-up is an optimisation: never fail the caller for it
        log.debug("pg_notify failed: %s", exc)


def _libpq_url(database_url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as libpq wants it."""
    scheme, _, rest = database_url.partition("://")
    return "postgresql://" + rest if scheme.startswith("postgres") else database_url


class Listener:
    """Sets asyncio events when their channel is notified."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._events: dict[str, list[asyncio.Event]] = defaultdict(list)

    def event(self, channel: str) -> asyncio.Event:
        """An event set whenever `channel` is notified (also from this process)."""
        ev = asyncio.Event()
        self._events[channel].append(ev)
        return ev

    def fire(self, channel: str) -> None:
        """Wake `channel` from inside this process."""
        for ev in self._events.get(channel, ()):
            ev.set()

    def fire_all(self) -> None:
        """Wake every waiter (after a lost connection, anything may have changed)."""
        for events in self._events.values():
            for ev in events:
                ev.set()

    def start(self) -> None:
        """Start listening on the running loop."""

    def stop(self) -> None:
        """Stop listening."""


class SocketListener(Listener):
    """Listens on the Unix datagram socket of a SQLite database."""

    def __init__(self, database_url: str) -> None:
        super().__init__(database_url)
        self.path = socket_path(database_url)
        self._sock: socket.socket | None = None

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(self.path)
        os.chmod(self.path, 0o600)  # in a 0700 folder already; the socket too is this user's alone
        sock.setblocking(False)
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(512)
            except (BlockingIOError, InterruptedError):
                return
            self.fire(data.decode(errors="replace"))

    def stop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


class PgListener(Listener):
    """LISTENs on PostgreSQL, to the kinds of channel waited for; reconnects with back-off if the
    connection drops."""

    #: how soon a kind first waited for after the start is listened to (its waiters look meanwhile)
    NEW_KINDS_EVERY = 1.0

    def __init__(self, database_url: str) -> None:
        super().__init__(database_url)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen(), name="pg-listen")

    def _kinds(self) -> set[str]:
        return {pg_channel(channel) for channel in self._events}

    async def _listen(self) -> None:
        import psycopg
        from psycopg import sql

        delay = 0.2
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    _libpq_url(self.database_url), autocommit=True
                ) as conn:
                    listening: set[str] = set()
                    while True:
                        new = self._kinds() - listening
                        for kind in sorted(new):
                            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(kind)))
                        if new:
                            delay = 0.2
                            listening |= new
                            # anything sent while we were not listening
                            for channel in [c for c in self._events if pg_channel(c) in new]:
                                self.fire(channel)
                        # notifications that come between two of these loops wait in psycopg's backlog
                        async for note in conn.notifies(timeout=self.NEW_KINDS_EVERY):
                            self.fire(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("LISTEN connection lost (%s); retrying in %.1fs", exc, delay)
                self.fire_all()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


def make_listener(database_url: str) -> Listener:
    """The listener that suits the database: PostgreSQL LISTEN, or the Unix socket."""
    if is_postgres(database_url):
        return PgListener(database_url)
    return SocketListener(database_url)


__all__ = [
    "REPLAY",
    "SCHEDULER",
    "WORKERS",
    "Listener",
    "PgListener",
    "Recheck",
    "SocketListener",
    "local_channel",
    "make_listener",
    "notify",
    "notify_in",
    "pg_channel",
    "wait_for_wake_up",
]
