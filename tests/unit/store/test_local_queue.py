"""`store.local_queue`: the embedded queue's rows, removed only inside the caller's transaction."""

from __future__ import annotations

from sqlalchemy import Engine

from herald.store import local_queue


def test_messages_come_back_oldest_first_per_queue(engine: Engine) -> None:
    first = local_queue.put(engine, "orders", [b"1", b"2", b"3"], {"h": "v"})
    local_queue.put(engine, "other", [b"x"])
    assert first == sorted(first)
    got = local_queue.fetch(engine, "orders", 0, 2)
    assert [(r.body, r.headers) for r in got] == [(b"1", {"h": "v"}), (b"2", {"h": "v"})]
    assert [r.body for r in local_queue.fetch(engine, "orders", first[1], 10)] == [b"3"]
    assert (local_queue.depth(engine, "orders"), local_queue.depth(engine, "other")) == (3, 1)


def test_rows_are_removed_with_the_commit_and_kept_on_a_rollback(engine: Engine) -> None:
    ids = local_queue.put(engine, "orders", [b"1", b"2"])
    try:
        with engine.begin() as conn:
            local_queue.remove(conn, ids[:1])
            raise RuntimeError("the delivery failed before its commit")
    except RuntimeError:
        pass
    assert local_queue.depth(engine, "orders") == 2
    with engine.begin() as conn:
        local_queue.remove(conn, ids[:1])
    assert [r.body for r in local_queue.fetch(engine, "orders", 0, 10)] == [b"2"]


def test_two_readers_claim_different_rows_and_a_rollback_gives_them_back(pg_database: str) -> None:
    from herald.store.db import make_engine
    from herald.store.migrate import upgrade

    engine = make_engine(pg_database)
    upgrade(engine)
    try:
        local_queue.put(engine, "orders", [b"1", b"2", b"3"])
        first = local_queue.claim(engine, "orders", 2)
        second = local_queue.claim(engine, "orders", 2)
        assert first is not None and second is not None
        assert [r.body for r in first[1]] == [b"1", b"2"] and [r.body for r in second[1]] == [b"3"]
        assert local_queue.claim(engine, "orders", 2) is None  # every row is locked
        local_queue.remove(second[0], [second[1][0].id])
        second[0].commit()
        second[0].close()
        first[0].close()  # a reader that died: its rows are free again
        again = local_queue.claim(engine, "orders", 10)
        assert again is not None and [r.body for r in again[1]] == [b"1", b"2"]
        again[0].close()
    finally:
        engine.dispose()


def test_a_publish_sent_again_with_its_keys_stores_nothing_new(engine: Engine) -> None:
    keys = local_queue.new_keys(2)
    first = local_queue.put(engine, "orders", [b"1", b"2"], None, keys)
    again = local_queue.put(engine, "orders", [b"1", b"2"], None, keys)
    assert again == first
    rows = local_queue.fetch(engine, "orders", 0, 10)
    assert [(r.body, r.publish_key) for r in rows] == [(b"1", keys[0]), (b"2", keys[1])]


def test_several_publishes_in_one_transaction_return_each_ones_ids(engine: Engine) -> None:
    one = local_queue.Publish("a", [b"1", b"2"], {"h": "v"}, local_queue.new_keys(2))
    two = local_queue.Publish("b", [b"3"], {}, local_queue.new_keys(1))
    with engine.begin() as conn:
        ids = local_queue.put_in(conn, [one, two, one])  # `one` sent twice in the transaction
    assert ids[0] == ids[2] and len(set(ids[0] + ids[1])) == 3
    assert local_queue.depths(engine, ["a", "b", "c"]) == {"a": 2, "b": 1, "c": 0}
    assert local_queue.queues_with_messages(engine, ["a", "c"]) == {"a"}
