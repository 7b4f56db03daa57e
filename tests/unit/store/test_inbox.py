"""`store.inbox` and `store.local_queue.move_in`: the publish inbox file, and its moves into the queue exactly once."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import Engine

from herald.store import local_queue
from herald.store.inbox import Inbox, InboxError, inbox_path
from herald.store.local_queue import Publish


@pytest.fixture
def path(tmp_path: Path) -> str:
    tmp_path.chmod(0o700)
    return str(tmp_path / "herald.db.inbox")


def publish(queue: str, *bodies: bytes) -> Publish:
    return Publish(queue, list(bodies), {"h": "v"}, local_queue.new_keys(len(bodies)))


def test_the_inbox_is_a_private_file_beside_the_database_that_a_publisher_only_opens(path: str, tmp_path: Path) -> None:
    assert inbox_path(f"sqlite:///{tmp_path}/herald.db") == path
    assert inbox_path("sqlite:///:memory:") is None
    assert Inbox.open(path) is None  # no Herald made it: publishers do not create it
    herald = Inbox.create(path)
    publisher = Inbox.open(path)
    assert publisher is not None and publisher.identity == herald.identity
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with publisher.locked():
        publisher.put(publish("orders", b"1", b"2"))
    assert stat.S_IMODE(os.stat(path + "-wal").st_mode) == 0o600
    rows = herald.take(0, 10)
    assert [(r.queue, r.body, r.headers) for r in rows] == [("orders", b"1", {"h": "v"}), ("orders", b"2", {"h": "v"})]
    assert Inbox.create(path).identity == herald.identity  # opened again by the next Herald: the same inbox
    publisher.close()
    herald.close()


def test_ids_are_never_reused_after_moved_rows_are_dropped(path: str) -> None:
    """A mark is an id: an inbox emptied and written again must not hand out ids at or below it."""
    inbox = Inbox.create(path)
    with inbox.locked():
        inbox.put(publish("q", b"1", b"2"))
    top = inbox.take(0, 10)[-1].id
    with inbox.locked():
        inbox.drop(top)
        inbox.put(publish("q", b"3"))
    assert [(r.id > top, r.body) for r in inbox.take(0, 10)] == [(True, b"3")]
    inbox.close()


def test_a_file_of_another_schema_is_refused(path: str) -> None:
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(InboxError):
        Inbox.open(path)
    with pytest.raises(InboxError):
        Inbox.create(path)


def test_a_move_made_again_adds_nothing_and_each_inbox_has_its_own_mark(engine: Engine, tmp_path: Path) -> None:
    """A Herald killed after a move's commit, before dropping the rows, moves them again at its next start."""
    tmp_path.chmod(0o700)
    inbox = Inbox.create(str(tmp_path / "a.inbox"))
    with inbox.locked():
        inbox.put(publish("orders", b"1", b"2"))
    rows = inbox.take(0, 10)
    assert local_queue.move_in(engine, inbox.identity, rows) == (rows[-1].id, {"orders"})
    assert local_queue.move_in(engine, inbox.identity, rows) == (rows[-1].id, set())  # the same rows again
    assert local_queue.depth(engine, "orders") == 2
    assert local_queue.moved_up_to(engine, inbox.identity) == rows[-1].id
    stored = local_queue.fetch(engine, "orders", 0, 10)
    assert [(r.body, r.publish_key, r.created_at) for r in stored] == [
        (r.body, r.publish_key, r.created_at) for r in rows
    ]  # the publisher's key and time
    # Another inbox file (a new one made after the first was removed) starts from its own mark.
    other = Inbox.create(str(tmp_path / "b.inbox"))
    with other.locked():
        other.put(publish("orders", b"3"))
    assert local_queue.move_in(engine, other.identity, other.take(0, 10))[1] == {"orders"}
    assert local_queue.depth(engine, "orders") == 3
    inbox.close()
    other.close()


def test_a_body_herald_could_not_move_is_refused_to_the_publisher(path: str) -> None:
    inbox = Inbox.create(path)
    with inbox.locked(), pytest.raises(TypeError):
        inbox.put(Publish("q", ["text, not bytes"], {}, local_queue.new_keys(1)))  # type: ignore[list-item]
    assert inbox.take(0, 10) == []
    inbox.close()
