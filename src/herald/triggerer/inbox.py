"""Publishing to `local://` while Herald runs: publishers commit to the inbox, Herald moves it in batches.

Why: on SQLite one connection writes a database at a time, and the running
Herald writes its database all the time. A publisher that committed there (or
handed its message to Herald to commit) waited for Herald's writes, its
database thread's turn and its event loop: ~100-270 messages/s for one
publisher publishing one message at a time. Now, while a Herald that reads the
queues runs on SQLite (`herald standalone`, or `herald triggerer`), a publisher
commits its messages to the publish inbox, a SQLite file of its own beside the
database that Herald's writes never hold (`herald.store.inbox`), and Herald
moves them into `local_queue_message` in batches (`InboxMover`). A publish
returns once committed to the inbox; it waits for no commit of Herald's.

How a publisher knows that a Herald moves the inbox: Herald listens on a Unix
stream socket beside its wake-up socket (`NAME.db.inbox.sock`, 0600 in a 0700
folder) and greets each connection with its inbox's identity. A publisher keeps
one connection per thread. Each publish, with the inbox's lock held:

1. it peeks at the connection: end-of-file (Herald stopped or was killed) means
   no Herald moves the inbox now, and the publisher writes the database
   itself, as with no Herald at all;
2. it commits its messages to the inbox;
3. then it writes one byte on the connection (never waiting: a full buffer
   means Herald has wake-ups to read already) to wake the mover.

Nothing lost, nothing doubled, whatever dies when:

- A message is in the inbox (committed there) or in the database (written
  directly), never neither: a publish returns after one of the two commits.
- A move inserts the rows and the inbox's mark (the highest id moved) in one
  transaction of the metadata database (`store.local_queue.move_in`); the inbox
  drops rows only below the mark. A Herald killed anywhere in a move makes it
  again at its next start, from the mark: nothing twice.
- A Herald that stops closes its socket and its connections first, then takes
  the inbox's lock and moves what is left: a publisher that saw it running
  holds the lock until its commit, so that commit is in the last move; one that
  comes after sees end-of-file and writes the database itself.
- A Herald killed with SIGKILL leaves messages committed to the inbox since its
  last move: the next Herald that starts moves them before anything else.
- Each message keeps the key its publisher made (`store.local_queue.new_keys`)
  under the queue's unique index, and that key is its dedupe key: a publish
  whose inbox commit failed and that the publisher then writes itself is still
  one message.

On PostgreSQL publishers write the database directly: rows are locked per row,
not per database, and NOTIFY wakes the triggerers of every machine; there is
no inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import selectors
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from herald import notify
from herald.store import local_queue
from herald.store.inbox import Inbox, InboxError, inbox_path
from herald.store.local_queue import Publish

if TYPE_CHECKING:
    from herald.store.db import Database

log = logging.getLogger("herald.inbox")

#: the inbox socket's name beside the wake-up socket (`NAME.db.inbox.sock`)
SUFFIX = ".inbox.sock"
#: seconds a publisher waits for a new connection's greeting before writing the database itself
GREETING_TIMEOUT = 10.0
#: rows moved per transaction of the metadata database
MOVE_BATCH = 2000
#: seconds between two looks at the inbox with no wake-up (a publisher killed before it woke Herald)
FALLBACK_POLL_SECONDS = 2.0
#: moved rows are dropped from the inbox when no wake-up came for a poll period, or while publishes
#: keep coming, once this many wait or DROP_SECONDS passed since the last drop
DROP_EVERY = 20000
DROP_SECONDS = 10.0
_WAKE = b"\x01"


def inbox_socket_path(database_url: str) -> str:
    """Where the Herald using the SQLite database at `database_url` greets publishers."""
    return notify.socket_path(database_url, SUFFIX)


# -- the publisher's side ------------------------------------------------------------------------


class _Link:
    """A thread's connection to the running Herald and its handle on the inbox."""

    def __init__(self, url: str, sock: socket.socket, inbox: Inbox) -> None:
        self.url = url
        self.sock = sock
        self.inbox = inbox
        self.pid = os.getpid()  # a forked child makes its own
        self.closed = False

    def herald_runs(self) -> bool:
        """True while Herald keeps the connection open (it never writes after its greeting)."""
        try:
            return bool(self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except BlockingIOError:
            return True  # nothing to read: open
        except OSError:
            return False

    def wake(self) -> None:
        with contextlib.suppress(OSError):  # full (wake-ups wait to be read) or closed (moved at the next start)
            self.sock.send(_WAKE, socket.MSG_DONTWAIT)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.pid == os.getpid():
            with contextlib.suppress(OSError):
                self.sock.close()
            self.inbox.close()
        else:
            self.sock.detach()  # the parent's: leave them open for the parent
            self.inbox.detach()

    def __del__(self) -> None:
        self.close()


class _Links(threading.local):
    link: _Link | None = None


_links = _Links()


def publish(database_url: str, publish: Publish) -> bool:
    """Commit `publish` to the running Herald's inbox: True once committed, False when no Herald moves it.

    False means the caller writes the database itself, with the same keys (see
    the module's docstring). A connection kept from an earlier publish that
    turns out closed (Herald restarted since) is made again once.
    """
    for _ in range(2):
        link, reused = _link(database_url)
        if link is None:
            return False
        try:
            with link.inbox.locked():
                if not link.herald_runs():
                    raise EOFError("Herald closed the connection")
                link.inbox.put(publish)
        except EOFError:
            _forget()
            if reused:
                continue
            return False
        except (OSError, sqlite3.Error) as exc:
            log.debug("could not commit to the inbox (%s): writing the database", exc)
            _forget()
            return False
        link.wake()
        return True
    return False


def _link(url: str) -> tuple[_Link | None, bool]:
    """This thread's link (and True if it was made before), or None when no Herald moves the inbox."""
    link = _links.link
    if link is not None and link.url == url and link.pid == os.getpid():
        return link, True
    _forget()
    path = inbox_path(url)
    if path is None:
        return None, False
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(GREETING_TIMEOUT)
        sock.connect(inbox_socket_path(url))
        identity = _greeting(sock)
        sock.settimeout(None)  # blocking: the peek and the wake-up pass MSG_DONTWAIT
        inbox = Inbox.open(path)
    except (OSError, EOFError, InboxError, sqlite3.Error) as exc:
        log.debug("no Herald takes publishes on its inbox (%s): writing the database", exc)
        sock.close()
        return None, False
    if inbox is None or inbox.identity != identity:
        # No inbox file, or another one than Herald moves (a database replaced under it).
        if inbox is not None:
            inbox.close()
        sock.close()
        return None, False
    _links.link = link = _Link(url, sock, inbox)
    return link, False


def _greeting(sock: socket.socket) -> str:
    """Herald's first line on a connection: its inbox's identity."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(128)
        if not chunk or len(data) > 128:
            raise EOFError("no greeting from Herald")
        data += chunk
    return data.decode("ascii").strip()


def _forget() -> None:
    link, _links.link = _links.link, None
    if link is not None:
        link.close()


# -- Herald's side -------------------------------------------------------------------------------


class InboxMover:
    """Greets publishers on the inbox socket and moves the inbox into the queue, on a thread of its own.

    The thread waits (`selectors`) on the listening socket, the publishers'
    connections (each byte a wake-up) and a wake-up of its own for `stop`. On
    any wake-up, or every FALLBACK_POLL_SECONDS, it moves every row above its
    mark, MOVE_BATCH rows a transaction, in turn with Herald's database thread
    (`Database.write_here`). What publishers commit meanwhile makes the next
    batch. Moved rows are dropped from the inbox when no wake-up came for a poll
    period, or every DROP_EVERY rows or DROP_SECONDS, so that the inbox's lock,
    which publishers take for each publish, is seldom Herald's.

    Args:
        db: the metadata database (SQLite).
        on_moved: called on the caller's loop with the queues that got messages
            (wakes their consumers).
        fault: called with "inbox_after_move" after each move's commit (fault
            injection tests crash there).
    """

    def __init__(
        self,
        db: Database,
        on_moved: Callable[[set[str]], None],
        fault: Callable[[str], None] | None = None,
        poll: float = FALLBACK_POLL_SECONDS,
    ) -> None:
        self._db = db
        self._on_moved = on_moved
        self._fault = fault or (lambda point: None)
        self._poll = poll
        self.path = inbox_socket_path(db.url)
        self._inbox: Inbox | None = None
        self._listener: socket.socket | None = None
        self._peers: set[socket.socket] = set()
        self._thread: threading.Thread | None = None
        self._caller: asyncio.AbstractEventLoop | None = None
        self._stop_r: socket.socket | None = None
        self._stop_w: socket.socket | None = None
        self._mark = 0
        self._dropped_to = 0
        self._dropped_at = time.monotonic()
        #: messages moved, and the transactions that moved them (tests read them)
        self.messages = 0
        self.moves = 0

    def start(self) -> None:
        """Open (or create) the inbox, listen (replacing a killed Herald's socket file), serve on a new thread.

        What the inbox holds already (committed while no Herald moved it) is moved first, on that thread.
        """
        path = inbox_path(self._db.url)
        if path is None:
            return  # a database in memory: publishers in other processes cannot reach it anyway
        self._caller = asyncio.get_running_loop()
        self._inbox = Inbox.create(path)
        self._mark = self._dropped_to = local_queue.moved_up_to(self._db.engine, self._inbox.identity)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.path)
        os.chmod(self.path, 0o600)
        sock.listen(128)
        sock.setblocking(False)
        self._listener = sock
        self._stop_r, self._stop_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name="herald-inbox", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Close the socket and the connections, then move what publishers committed (see the module's docstring)."""
        thread, stop_r, stop_w = self._thread, self._stop_r, self._stop_w
        if thread is None or stop_r is None or stop_w is None:
            return
        with contextlib.suppress(OSError):
            stop_w.send(b"\0")
        await asyncio.to_thread(thread.join, 30)
        self._thread = None
        stop_r.close()
        stop_w.close()

    def _run(self) -> None:
        assert self._listener is not None and self._inbox is not None and self._stop_r is not None
        selector = selectors.DefaultSelector()
        try:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._stop_r, selectors.EVENT_READ)
            self._move_all()
            self._serve(selector)
        except Exception:
            log.exception("the publish inbox stopped; publishers write the database directly")
        finally:
            selector.close()
            self._close_sockets()
            try:
                # Every publisher that saw this Herald running holds the lock until its commit.
                with self._inbox.locked():
                    self._move_all()
                    self._drop_locked()
            except Exception:
                log.exception("moving the publish inbox at stop failed; the next start moves it")
            self._inbox.close()

    def _serve(self, selector: selectors.BaseSelector) -> None:
        while True:
            ready = selector.select(self._poll)
            for key, _ in ready:
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._stop_r:
                    return
                if sock is self._listener:
                    self._accept(selector)
                else:
                    self._read_wakes(selector, sock)
            self._move_all()
            if (
                not ready
                or self._mark - self._dropped_to >= DROP_EVERY
                or time.monotonic() - self._dropped_at >= DROP_SECONDS
            ):
                self._drop()

    def _accept(self, selector: selectors.BaseSelector) -> None:
        assert self._listener is not None and self._inbox is not None
        with contextlib.suppress(BlockingIOError):
            while True:
                peer, _ = self._listener.accept()
                try:
                    peer.setblocking(True)
                    peer.settimeout(5)
                    peer.sendall(self._inbox.identity.encode("ascii") + b"\n")
                    peer.setblocking(False)
                except OSError:
                    peer.close()
                    continue
                selector.register(peer, selectors.EVENT_READ)
                self._peers.add(peer)

    def _read_wakes(self, selector: selectors.BaseSelector, peer: socket.socket) -> None:
        try:
            data = peer.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the publisher closed its connection
            selector.unregister(peer)
            self._peers.discard(peer)
            peer.close()

    def _move_all(self) -> None:
        """Move every row above the mark, a batch a transaction, and wake the queues' consumers."""
        assert self._inbox is not None
        db = self._db
        while True:
            rows = self._inbox.take(self._mark, MOVE_BATCH)
            if not rows:
                return
            mark, queues = db.write_here(local_queue.move_in, db.engine, self._inbox.identity, rows)
            self._mark = max(self._mark, mark, rows[-1].id)
            self.moves += 1
            self.messages += len(rows)
            self._fault("inbox_after_move")
            if queues and self._caller is not None:
                with contextlib.suppress(RuntimeError):  # the main loop closed: nobody to wake
                    self._caller.call_soon_threadsafe(self._on_moved, queues)
            if len(rows) < MOVE_BATCH:
                return

    def _drop(self) -> None:
        """Delete the moved rows from the inbox (with its lock: publishers wait for it meanwhile)."""
        assert self._inbox is not None
        if self._dropped_to < self._mark:
            with self._inbox.locked():
                self._drop_locked()

    def _drop_locked(self) -> None:
        assert self._inbox is not None
        self._dropped_at = time.monotonic()
        if self._dropped_to < self._mark:
            self._inbox.drop(self._mark)
            self._dropped_to = self._mark

    def _close_sockets(self) -> None:
        """Stop listening and close every connection: publishers see end-of-file and write the database."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        for peer in self._peers:
            with contextlib.suppress(OSError):
                peer.close()
        self._peers.clear()


__all__ = ["InboxMover", "inbox_socket_path", "publish"]
