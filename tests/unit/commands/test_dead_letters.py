"""commands/dead_letters.py: asking for the replay of one dead letter, or of all of a watcher's."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from herald.commands import dead_letters
from herald.commands.errors import Conflict, NotFound
from herald.store import tables as t
from tests.unit.commands.conftest import Db


def _requested(db: Db) -> set[int]:
    d = t.dead_letter
    return {r.id for r in db.all(select(d.c.id).where(d.c.replay_requested_at.is_not(None)))}


def test_request_the_replay_of_one_dead_letter(db: Db) -> None:
    first = db.add_dead_letter(db.watcher_id())
    db.add_dead_letter(db.watcher_id())
    dead_letters.request_replay(db.engine, first)
    assert _requested(db) == {first}


def test_one_that_cannot_be_replayed_is_refused(db: Db) -> None:
    with pytest.raises(NotFound, match="no dead letter 999"):
        dead_letters.request_replay(db.engine, 999)
    done = db.add_dead_letter(db.watcher_id(), replayed=True)
    with pytest.raises(Conflict, match="already replayed"):
        dead_letters.request_replay(db.engine, done)
    orphan = db.add_dead_letter(None)
    with pytest.raises(Conflict, match="no watcher"):
        dead_letters.request_replay(db.engine, orphan)
    assert _requested(db) == set()


def test_request_the_replay_of_every_dead_letter_of_a_watcher_not_replayed_yet(db: Db) -> None:
    watcher = db.watcher_id()
    waiting = {db.add_dead_letter(watcher), db.add_dead_letter(watcher)}
    db.add_dead_letter(watcher, replayed=True)
    db.add_dead_letter(None)
    assert dead_letters.request_replay_of_watcher(db.engine, watcher) == 2
    assert _requested(db) == waiting
    assert dead_letters.request_replay_of_watcher(db.engine, watcher) == 0  # already asked for


def test_an_unknown_watcher_is_not_found(db: Db) -> None:
    with pytest.raises(NotFound, match="no watcher 999"):
        dead_letters.request_replay_of_watcher(db.engine, 999)
