"""Lease rounds cost the same for one watcher or a hundred (SQLite and PostgreSQL).

An idle triggerer renews its leases every few seconds; a statement per consumer
group made that most of Herald's idle CPU with many watchers. These tests count
the statements a round sends, and check that batching kept what a lease means.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event, insert, select

from herald.store import tables as t
from herald.store import triggerers, watchers
from herald.store.triggerers import Identity
from herald.store.types import utcnow
from tests.unit.commands.conftest import Db

w = t.watcher


def more_watchers(db: Db, n: int) -> list[int]:
    """`n` watchers besides the synced one, on its asset (rows as the DAG sync writes them)."""
    first = db.one(select(w).where(w.c.id == db.watcher_id()))
    with db.engine.begin() as conn:
        for i in range(n):
            conn.execute(
                insert(w).values(
                    asset_id=first.asset_id,
                    name=f"extra_{i}",
                    trigger=first.trigger,
                    consumer_key=f"extra_{i}",
                    state=first.state,
                    updated_at=utcnow(),
                )
            )
    rows = db.all(select(w.c.id).where(w.c.name.like("extra_%")).order_by(w.c.id))
    return [int(r.id) for r in rows]


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements (not BEGIN/COMMIT) sent while the block runs."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb in {"SELECT", "INSERT", "UPDATE", "DELETE"}:
            sent.append(verb)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def owner_of(db: Db, wid: int) -> str | None:
    value: str | None = db.one(select(w.c.lease_owner).where(w.c.id == wid))[0]
    return value


def test_fifty_groups_are_claimed_and_renewed_by_one_update(db: Db) -> None:
    ids = more_watchers(db, 100)
    groups = {f"g{k}": ids[2 * k : 2 * k + 2] for k in range(50)}
    with statements(db.engine) as sent:
        assert watchers.claim_leases(db.engine, "a", groups, 30) == set(groups)
    assert sent == ["UPDATE"]
    with statements(db.engine) as sent:
        assert watchers.claim_leases(db.engine, "a", groups, 30) == set(groups)  # the renewal
    assert sent == ["UPDATE"]
    assert {owner_of(db, i) for i in ids} == {"a"}
    with statements(db.engine) as sent:
        assert watchers.claim_leases(db.engine, "b", groups, 30) == set()
    assert sent == ["UPDATE"]  # nothing taken in part: nothing to give back


def test_a_group_taken_in_part_is_given_back_and_a_paused_one_is_held_by_no_one(db: Db) -> None:
    a1, a2, b1, b2, c1, d1 = more_watchers(db, 6)
    assert watchers.claim_leases(db.engine, "other", {"theirs": [b2]}, 30) == {"theirs"}
    with db.engine.begin() as conn:
        assert watchers.set_paused(conn, d1, True)
    wanted = {"a": [a1, a2], "b": [b1, b2], "c": [c1], "d": [d1]}
    with statements(db.engine) as sent:
        assert watchers.claim_leases(db.engine, "me", wanted, 30) == {"a", "c"}
    assert sent == ["UPDATE", "UPDATE"]  # the claim, and the part of "b" given back
    assert [owner_of(db, i) for i in (a1, a2, b1, b2, c1, d1)] == ["me", "me", None, "other", "me", None]
    # An expired lease is anyone's: "b" whole once the other's lapses.
    assert watchers.claim_leases(db.engine, "other", {"theirs": [b2]}, -1) == {"theirs"}
    assert watchers.claim_leases(db.engine, "me", wanted, 30) == {"a", "b", "c"}


def test_a_heartbeat_reads_holders_and_pauses_of_any_number_of_watchers_in_four_statements(db: Db) -> None:
    ids = more_watchers(db, 40)
    watchers.claim_leases(db.engine, "a", {"k": ids[:10]}, 30)
    with db.engine.begin() as conn:
        watchers.set_paused(conn, ids[20], True)
    me = Identity("a", "host", 1, utcnow())
    triggerers.beat(db.engine, me, [], 0, [], 30)  # its first beat inserts its row
    with statements(db.engine) as sent:
        view = triggerers.beat(db.engine, me, ids[:10], 3, ids, 30)
    assert sorted(sent) == ["DELETE", "SELECT", "SELECT", "UPDATE"]
    assert view.paused == {ids[20]}
    assert {view.holders[i] for i in ids[:10]} == {"a"} and {view.holders[i] for i in ids[10:]} == {None}


def test_lags_of_many_watchers_are_written_in_one_batch(db: Db) -> None:
    ids = more_watchers(db, 5)
    watchers.set_lags(db.engine, {wid: n for n, wid in enumerate(ids)})
    assert [r.lag for r in db.all(select(w.c.lag).where(w.c.id.in_(ids)).order_by(w.c.id))] == list(range(5))
    with statements(db.engine) as sent:
        watchers.set_lags(db.engine, {})
    assert sent == []
