"""Publishing to `local://` through the running Herald: a Unix socket and group commit.

Why: on SQLite one connection writes at a time. A publisher process that writes
the database itself waits for the write lock behind Herald's own writes, and
SQLite's busy handler sleeps between its tries (a producer got ~100 messages/s
through while Herald was busy). So the Herald that reads the queues (`herald
standalone`, or `herald triggerer`, on SQLite) listens on a Unix stream socket
beside its wake-up socket (`notify.socket_path`, 0600 in a 0700 folder).
Publishes that arrive while one commit runs wait for it and then go together in
the next transaction (group commit), taken in turn with Herald's own database
thread; Herald
wakes the queues' consumers itself, with no datagram.

A publish returns only after its messages are committed, exactly once whatever
dies when:

- The publisher makes a key for each message (`store.local_queue.new_keys`) and
  sends the keys with the bodies. A row keeps its key under a unique index, and
  the message's dedupe key is that key (`LocalQueueSource`).
- Herald replies to a publish only after the transaction holding it committed.
- A publisher that gets no reply - no socket, connection refused (Herald is
  not running, or was killed and left its socket file), the connection lost
  before the reply, an error reply, or no answer within REPLY_TIMEOUT - writes
  the database itself with the same keys (`store.local_queue.put`). If Herald
  never committed them, that write stores the messages. If Herald did, the rows
  still waiting are skipped by the unique key, and a row consumed meanwhile
  comes back as a second message with the first one's dedupe key, which the
  triggerer turns away as a duplicate. One event per message either way.

On PostgreSQL publishers write the database directly: rows are locked per row,
not per database, and NOTIFY wakes the triggerers of every machine; there is
no socket.

The wire: a request is `!II` (header length, payload length), a JSON header
`{"queue", "headers", "keys", "sizes"}` and the bodies one after the other; a
reply is `!I` (length) and JSON `{"ids": [...]}` or `{"error": "..."}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from herald import notify
from herald.store import local_queue
from herald.store.local_queue import Publish

if TYPE_CHECKING:
    from herald.store.db import Database

log = logging.getLogger("herald.publish_socket")

#: the publish socket's name beside the wake-up socket (`NAME.db.sock`)
SUFFIX = ".pub.sock"
#: seconds a publisher waits for Herald's reply before writing the database itself
REPLY_TIMEOUT = 30.0
#: a request larger than this is refused (the connection is closed: the publisher writes directly)
MAX_HEADER = 64 * 1024 * 1024
MAX_PAYLOAD = 1024 * 1024 * 1024
#: seconds a stopping Herald gives the publishes it received to commit and be answered
DRAIN_TIMEOUT = 5.0

_REQUEST = struct.Struct("!II")
_REPLY = struct.Struct("!I")


@functools.lru_cache(maxsize=16)
def publish_socket_path(database_url: str) -> str:
    """Where the Herald using the SQLite database at `database_url` takes publishes."""
    return notify.socket_path(database_url, SUFFIX)


def encode_request(publish: Publish) -> bytes:
    """One publish as its request frame."""
    header = json.dumps(
        {
            "queue": publish.queue,
            "headers": publish.headers,
            "keys": list(publish.keys),
            "sizes": [len(b) for b in publish.bodies],
        }
    ).encode()
    payload = b"".join(publish.bodies)
    return _REQUEST.pack(len(header), len(payload)) + header + payload


def decode_request(header: bytes, payload: bytes) -> Publish:
    """A request frame's publish; ValueError if it does not hold together."""
    fields = json.loads(header)
    queue, headers, keys, sizes = fields["queue"], fields["headers"], fields["keys"], fields["sizes"]
    if not isinstance(queue, str) or not isinstance(headers, dict) or len(keys) != len(sizes):
        raise ValueError("malformed publish")
    if sum(sizes) != len(payload) or not all(isinstance(k, str) and 0 < len(k) <= 64 for k in keys):
        raise ValueError("malformed publish")
    bodies, at = [], 0
    for size in sizes:
        bodies.append(payload[at : at + size])
        at += size
    return Publish(queue, bodies, {str(k): str(v) for k, v in headers.items()}, keys)


# -- the publisher's side ------------------------------------------------------------------------


class _Held:
    """A thread's connection to the socket, closed when the thread ends (or it is replaced)."""

    def __init__(self, sock: socket.socket, path: str) -> None:
        self.sock = sock
        self.path = path
        self.pid = os.getpid()  # a forked child opens its own

    def close(self) -> None:
        if self.pid == os.getpid():
            with contextlib.suppress(OSError):
                self.sock.close()
        else:
            self.sock.detach()  # the parent's: leave it open for the parent

    def __del__(self) -> None:
        self.close()


class _Connections(threading.local):
    held: _Held | None = None


_connection = _Connections()


def send(database_url: str, publish: Publish, timeout: float = REPLY_TIMEOUT) -> list[int] | None:
    """Publish through the running Herald: the messages' ids once committed, or None.

    None means no reply (see the module's docstring): the caller writes the
    database itself with the same keys. A connection kept from an earlier publish
    that turns out dead (Herald restarted since) is replaced once.
    """
    path = publish_socket_path(database_url)
    frame = encode_request(publish)
    for _ in range(2):
        sock, reused = _connect(path, timeout)
        if sock is None:
            return None
        try:
            sock.sendall(frame)
            reply = json.loads(_read(sock, _REPLY.unpack(_read(sock, _REPLY.size))[0]))
        except (OSError, EOFError, ValueError) as exc:
            _forget()
            if reused:
                continue
            log.debug("no reply from Herald (%s): writing the database", exc)
            return None
        if "ids" not in reply:
            log.debug("Herald could not commit a publish (%s): writing the database", reply.get("error"))
            return None
        return [int(i) for i in reply["ids"]]
    return None


def _connect(path: str, timeout: float) -> tuple[socket.socket | None, bool]:
    """This thread's connection (and True if it was made before), or None when no Herald listens."""
    held = _connection.held
    if held is not None and held.path == path and held.pid == os.getpid():
        return held.sock, True
    _forget()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None, False
    _connection.held = _Held(sock, path)
    return sock, False


def _forget() -> None:
    held, _connection.held = _connection.held, None
    if held is not None:
        held.close()


def _read(sock: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError("Herald closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# -- Herald's side -------------------------------------------------------------------------------


class PublishServer:
    """Takes publishes on the Unix socket and commits them in groups, on a thread of its own.

    The socket is served by an event loop on its own thread, so that a busy main
    loop (the scheduler, the workers' results) does not delay the replies; the
    commits run on the database's thread like every other write of Herald.

    Args:
        db: the metadata database (SQLite).
        on_committed: called on the caller's loop with the queues that got messages
            (wakes their consumers).
        fault: called with "publish_after_commit" between a commit and its replies
            (fault-injection tests crash there).
    """

    def __init__(
        self,
        db: Database,
        on_committed: Callable[[set[str]], None],
        fault: Callable[[str], None] | None = None,
    ) -> None:
        self._db = db
        self._on_committed = on_committed
        self._fault = fault or (lambda point: None)
        self.path = publish_socket_path(db.url)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._caller: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._pending: list[tuple[_Peer, Publish]] = []
        self._arrived: asyncio.Event | None = None
        self._peers: set[_Peer] = set()
        #: messages committed, and transactions that committed them (a test reads them)
        self.messages = 0
        self.commits = 0

    def start(self) -> None:
        """Listen (replacing the socket file a killed Herald left) and serve on a new thread."""
        self._caller = asyncio.get_running_loop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.path)
        os.chmod(self.path, 0o600)
        sock.listen(128)
        sock.setblocking(False)
        self._thread = threading.Thread(target=self._run, args=(sock,), name="herald-publish-socket", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    async def stop(self) -> None:
        """Stop listening, answer what was received (up to DRAIN_TIMEOUT), close, remove the socket file."""
        loop, stopping = self._loop, self._stopping
        if self._thread is None or loop is None or stopping is None:
            return
        with contextlib.suppress(RuntimeError):  # its loop ended already
            loop.call_soon_threadsafe(stopping.set)
        await asyncio.to_thread(self._thread.join, DRAIN_TIMEOUT + 5)
        self._thread = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _run(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve(sock))
        except Exception:
            log.exception("the publish socket stopped; publishers write the database directly")
        finally:
            loop.close()

    async def _serve(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stopping = asyncio.Event()
        self._arrived = asyncio.Event()
        server = await loop.create_unix_server(lambda: _Peer(self), sock=sock)
        committer = asyncio.create_task(self._commit_groups())
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            self._arrived.set()  # the committer answers what is pending, then ends
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(committer, DRAIN_TIMEOUT)
            for peer in list(self._peers):
                peer.close()
            # A publisher still waiting gets end-of-file and writes the database itself.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1)

    def offer(self, peer: _Peer, publish: Publish) -> None:
        """A publish received: it goes in the next group."""
        self._pending.append((peer, publish))
        assert self._arrived is not None
        self._arrived.set()

    async def _commit_groups(self) -> None:
        assert self._arrived is not None and self._stopping is not None
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            group, self._pending = self._pending, []
            if not group:
                if self._stopping.is_set():
                    return
                continue
            replies = self._commit([p for _, p in group])
            self._fault("publish_after_commit")
            for (peer, _), reply in zip(group, replies, strict=True):
                peer.reply(reply)
            queues = {p.queue for (_, p), reply in zip(group, replies, strict=True) if "ids" in reply}
            if queues and self._caller is not None:
                with contextlib.suppress(RuntimeError):  # the main loop closed: nobody to wake
                    self._caller.call_soon_threadsafe(self._on_committed, queues)

    def _commit(self, publishes: Sequence[Publish]) -> list[dict[str, Any]]:
        """One transaction for the group; each publish apart if it fails (one bad publish must not fail the others).

        It runs on this thread, blocking its loop: what arrives meanwhile waits in
        the socket buffers and makes the next group. In turn with the database
        thread (`Database.write_here`), not behind its queue: a publisher waits
        for the one call it runs now at most.
        """
        try:
            ids = self._db.write_here(local_queue.put_groups, self._db.engine, publishes)
        except Exception as exc:
            if len(publishes) == 1:
                log.debug("a publish could not be committed: %s", exc)
                return [{"error": f"{type(exc).__name__}: {exc}"}]
            return [reply for p in publishes for reply in self._commit([p])]
        self.commits += 1
        self.messages += sum(len(p.bodies) for p in publishes)
        return [{"ids": i} for i in ids]


class _Peer(asyncio.Protocol):
    """One publisher's connection: requests read as they arrive, replies in their order."""

    def __init__(self, server: PublishServer) -> None:
        self._server = server
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server._peers.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._server._peers.discard(self)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= _REQUEST.size:
            header_len, payload_len = _REQUEST.unpack_from(buffer)
            if header_len > MAX_HEADER or payload_len > MAX_PAYLOAD:
                self.close()
                return
            end = _REQUEST.size + header_len + payload_len
            if len(buffer) < end:
                return
            header = bytes(buffer[_REQUEST.size : _REQUEST.size + header_len])
            payload = bytes(buffer[_REQUEST.size + header_len : end])
            del buffer[:end]
            try:
                publish = decode_request(header, payload)
            except (ValueError, KeyError, TypeError) as exc:
                log.debug("a malformed publish: %s", exc)
                self.close()
                return
            self._server.offer(self, publish)

    def reply(self, reply: dict[str, Any]) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            data = json.dumps(reply).encode()
            transport.write(_REPLY.pack(len(data)) + data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


__all__ = ["REPLY_TIMEOUT", "PublishServer", "publish_socket_path", "send"]
