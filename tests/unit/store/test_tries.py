"""`store.tries`: every write to a try is guarded by the transitions of `store.states` (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from herald.store import tables as t
from herald.store import tries
from herald.store.states import RunState, TryState
from herald.store.types import utcnow
from tests.unit.commands.conftest import Db

ti = t.task_instance


def ids(db: Db, run_id: str) -> dict[str, int]:
    rows = db.all(
        select(ti.c.task_id, ti.c.id).join(t.dag_run, t.dag_run.c.id == ti.c.run_pk).where(t.dag_run.c.run_id == run_id)
    )
    return {r.task_id: int(r.id) for r in rows}


def row(db: Db, ti_id: int) -> Any:
    return db.one(select(ti.c.state, ti.c.try_number, ti.c.hostname).where(ti.c.id == ti_id))


def test_queue_bumps_the_try_number_once_and_only_from_a_state_that_may_be_queued(db: Db) -> None:
    run = db.add_run(RunState.RUNNING, {"extract": TryState.SCHEDULED, "load": TryState.NONE})
    task = ids(db, run)
    with db.engine.begin() as conn:
        tries.queue(conn, [task["extract"], task["load"]])
    with db.engine.begin() as conn:
        tries.queue(conn, [task["extract"]])  # queued twice: not a second try
    assert tuple(row(db, task["extract"]))[:2] == (TryState.QUEUED, 1)
    assert tuple(row(db, task["load"]))[:2] == (TryState.NONE, 0)  # waits for its upstream


def test_a_finished_try_is_never_moved_by_a_late_or_repeated_result(db: Db) -> None:
    run = db.add_run(RunState.RUNNING, {"extract": TryState.SCHEDULED})
    task = ids(db, run)["extract"]
    now = utcnow()
    with db.engine.begin() as conn:
        tries.queue(conn, [task])
        tries.mark_started(conn, [(task, now, "w1")])
        tries.write_ends(conn, [{"id": task, "state": TryState.SUCCESS, "ended_at": now}])
    with db.engine.begin() as conn:
        tries.write_ends(conn, [{"id": task, "state": TryState.FAILED, "ended_at": now}])
        tries.mark_started(conn, [(task, now, "w2")])  # a started notice after the result
    assert tuple(row(db, task)) == (TryState.SUCCESS, 1, "w1")


def test_a_try_is_claimed_once_under_its_number_and_heartbeats_only_for_its_holder(db: Db) -> None:
    run = db.add_run(RunState.RUNNING, {"extract": TryState.SCHEDULED})
    task = ids(db, run)["extract"]
    with db.engine.begin() as conn:
        tries.queue(conn, [task])
    with db.engine.begin() as conn:
        assert tries.claim_tries(conn, [(task, 2)], "w1") == []  # a message of another try
        assert tries.claim_tries(conn, [(task, 1)], "w1") == [task]
        assert tries.claim_tries(conn, [(task, 1)], "w2") == []  # the same message delivered twice
    with db.engine.begin() as conn:
        assert tries.heartbeat_tries(conn, [(task, 1)], "w1") == [task]
        assert tries.heartbeat_tries(conn, [(task, 1)], "w2") == []
        assert tries.heartbeat_tries(conn, [(task, 2)], "w1") == []
    assert tuple(row(db, task)) == (TryState.RUNNING, 1, "w1")


def test_a_batch_of_tries_is_claimed_in_one_statement_skipping_those_not_queued_under_their_number(db: Db) -> None:
    run = db.add_run(
        RunState.RUNNING, {"extract": TryState.SCHEDULED, "load": TryState.SCHEDULED, "report": TryState.SCHEDULED}
    )
    found = ids(db, run)
    extract, load, report = found["extract"], found["load"], found["report"]
    with db.engine.begin() as conn:
        tries.queue(conn, [extract, load, report])
        assert tries.claim_tries(conn, [(load, 1)], "w1") == [load]  # claimed by another message first
    with db.engine.begin() as conn:
        # load is taken, report's message is of another try number: only extract is claimed
        assert tries.claim_tries(conn, [(extract, 1), (load, 1), (report, 2)], "w2") == [extract]
    with db.engine.begin() as conn:
        assert sorted(tries.heartbeat_tries(conn, [(extract, 1), (load, 1)], "w2")) == [extract]
    assert tuple(row(db, extract)) == (TryState.RUNNING, 1, "w2")
    assert tuple(row(db, load)) == (TryState.RUNNING, 1, "w1")
    assert row(db, report)[0] == TryState.QUEUED


def test_decide_moves_only_tries_that_have_not_started(db: Db) -> None:
    run = db.add_run(RunState.RUNNING, {"extract": TryState.SCHEDULED, "load": TryState.NONE, "report": TryState.NONE})
    task = ids(db, run)
    with db.engine.begin() as conn:
        tries.queue(conn, [task["extract"]])
        tries.decide(conn, TryState.SKIPPED, [task["extract"], task["load"]], utcnow())
        tries.decide(conn, TryState.SCHEDULED, [task["report"]], utcnow())
    assert row(db, task["extract"]).state == TryState.QUEUED
    assert row(db, task["load"]).state == TryState.SKIPPED
    assert row(db, task["report"]).state == TryState.SCHEDULED


def test_stored_results_are_claimed_by_one_scheduler_only(db: Db) -> None:
    run = db.add_run(RunState.RUNNING, {"extract": TryState.RUNNING})
    task = ids(db, run)["extract"]
    with db.engine.begin() as conn:
        tries.store_results(conn, [{"ti_id": task, "try_number": 1, "state": "success", "result": 7, "log": ""}])
    with db.engine.begin() as conn:
        claimed = tries.claim_results(conn, 10)
    with db.engine.begin() as conn:
        assert tries.claim_results(conn, 10) == []
    assert [(r["ti_id"], r["state"], r["result"]) for r in claimed] == [(task, "success", 7)]


def test_a_try_requeued_as_lost_keeps_its_number_and_is_no_longer_its_silent_worker_s(db: Db) -> None:
    run = db.add_run(RunState.RUNNING, {"extract": TryState.SCHEDULED})
    task = ids(db, run)["extract"]
    with db.engine.begin() as conn:
        tries.queue(conn, [task])
        assert tries.claim_for_worker(conn, 1, None, "default", "w1") == [task]
    with db.engine.begin() as conn:
        assert tries.requeue_lost(conn, [(task, 2, "wrong number", "w1")], utcnow()) == []
        assert tries.requeue_lost(conn, [(task, 1, "w1 went silent", "w1")], utcnow()) == [task]
    assert tuple(row(db, task)) == (TryState.QUEUED, 1, None)
    with db.engine.begin() as conn:
        assert tries.claim_for_worker(conn, 1, None, "default", "w2") == [task]
        # w1 comes back: the try is not its own any more, and its heartbeat keeps nothing alive
        assert tries.not_running(conn, [task], "w1") == [task]
        assert tries.not_running(conn, [task], "w2") == []
        assert tries.requeue_counts(conn, [(task, 1), (task, 2)]) == {(task, 1): 1}
        (history,) = tries.requeues_of(conn, [task])[task]
    assert (history.try_number, history.reason, history.hostname) == (1, "w1 went silent", "w1")
    assert tuple(row(db, task)) == (TryState.RUNNING, 1, "w2")


def test_a_stopping_worker_gives_back_only_the_tries_it_holds_and_counts_no_requeue(db: Db) -> None:
    run = db.add_run(RunState.RUNNING, {"extract": TryState.SCHEDULED, "load": TryState.SCHEDULED})
    task = ids(db, run)
    with db.engine.begin() as conn:
        tries.queue(conn, [task["extract"], task["load"]])
        claimed = tries.claim_for_worker(conn, 10, None, "default", "w1")
    assert sorted(claimed) == sorted(task.values())
    with db.engine.begin() as conn:
        conn.execute(t.task_instance.update().where(ti.c.id == task["load"]).values(hostname="w2"))
        given = tries.release(conn, [task["extract"], task["load"]], "w1")
    assert given == [task["extract"]]  # "load" is w2's now: not w1's to give back
    assert tuple(row(db, task["extract"])) == (TryState.QUEUED, 1, None)  # the same try, nothing ran
    assert tuple(row(db, task["load"])) == (TryState.RUNNING, 1, "w2")
    assert db.all(select(t.task_requeue.c.id)) == []


def test_two_workers_claiming_at_once_take_the_oldest_tries_each_its_own(db: Db) -> None:
    run = db.add_run(RunState.RUNNING, {f"t{i}": TryState.SCHEDULED for i in range(6)})
    task = sorted(ids(db, run).values())
    with db.engine.begin() as conn:
        tries.queue(conn, task)
    if db.engine.dialect.name == "postgresql":
        # the first claim's transaction is still open: the second skips its tries, waits for nothing
        with db.engine.begin() as first, db.engine.begin() as second:
            mine = tries.claim_for_worker(first, 2, None, "default", "w1")
            theirs = tries.claim_for_worker(second, 3, None, "default", "w2")
        assert (mine, theirs) == (task[:2], task[2:5])
    else:  # one writer at a time: one claim after the other
        with db.engine.begin() as conn:
            assert tries.claim_for_worker(conn, 2, None, "default", "w1") == task[:2]
        with db.engine.begin() as conn:
            assert tries.claim_for_worker(conn, 3, None, "default", "w2") == task[2:5]
    assert [tuple(row(db, i))[::2] for i in task] == [
        *[(TryState.RUNNING, "w1")] * 2,
        *[(TryState.RUNNING, "w2")] * 3,
        (TryState.QUEUED, None),
    ]


def test_a_worker_s_results_are_stored_only_for_the_tries_it_still_holds_and_read_back_whole(db: Db) -> None:
    run = db.add_run(RunState.RUNNING, {"extract": TryState.SCHEDULED, "load": TryState.SCHEDULED})
    task = ids(db, run)
    with db.engine.begin() as conn:
        tries.queue(conn, list(task.values()))
        tries.claim_for_worker(conn, 2, None, "default", "w1")
        conn.execute(t.task_instance.update().where(ti.c.id == task["load"]).values(hostname="w2"))
    # JSON values of every shape: a list is a value, not an array of values
    sent = {
        "ti_id": task["extract"],
        "try_number": 1,
        "state": "success",
        "result": [1, [2, "x"], None],
        "xcom": {"k": ["v"]},
        "skip": [],
        "log": "line\n",
        "defer": None,
    }
    late = {"ti_id": task["load"], "try_number": 1, "state": "success", "result": "late", "log": ""}
    with db.engine.begin() as conn:
        assert tries.store_results(conn, [sent, late], "w1") == [task["extract"]]
    with db.engine.begin() as conn:
        (stored,) = tries.claim_results(conn, 10)
    assert {k: stored[k] for k in sent} == sent


def test_a_resumed_try_s_log_gets_its_trigger_s_lines_with_what_no_database_stores_replaced(db: Db) -> None:
    from sqlalchemy import update

    run = db.add_run(RunState.RUNNING, {"wait": TryState.DEFERRED})
    task = ids(db, run)["wait"]
    with db.engine.begin() as conn:
        conn.execute(update(ti).where(ti.c.id == task).values(log="before\n", next_method="execute_complete"))
    with db.engine.begin() as conn:
        # a trigger logged a NUL: PostgreSQL's text refuses it, and the whole pass would fail with it
        moved = tries.resume(conn, {task: {"event": 1}}, logs={task: "trigger \x00 said\n"})
    assert moved == [task]
    stored = db.one(select(ti.c.state, ti.c.log).where(ti.c.id == task))
    assert tuple(stored) == (TryState.QUEUED, "before\ntrigger \ufffd said\n")
