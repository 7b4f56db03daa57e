"""commands/runs.py: retrying a failed run, or one failed task, and what they held back."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from herald.commands import runs
from herald.commands.errors import Conflict, NotFound
from herald.store import runs as runs_store
from herald.store import tables as t
from herald.store.states import RunState, TryState
from tests.unit.commands.conftest import Db

FAILED_AT_LOAD = {"extract": TryState.SUCCESS, "load": TryState.FAILED, "report": TryState.UPSTREAM_FAILED}


def _states(db: Db, run_id: str) -> tuple[str, dict[str, tuple[str, int]]]:
    run = db.one(select(t.dag_run.c.id, t.dag_run.c.state).where(t.dag_run.c.run_id == run_id))
    ti = t.task_instance
    rows = db.all(select(ti.c.task_id, ti.c.state, ti.c.max_tries).where(ti.c.run_pk == run.id))
    return run.state, {r.task_id: (r.state, r.max_tries) for r in rows}


def test_retry_a_failed_run_reruns_its_failed_tasks_and_lets_what_they_held_back_wait(db: Db) -> None:
    run_id = db.add_run(RunState.FAILED, FAILED_AT_LOAD)
    done = runs.retry(db.engine, run_id)
    assert (done.state, done.retried) == (RunState.RUNNING, ["load"])
    state, tries = _states(db, run_id)
    assert state == RunState.RUNNING
    assert tries == {
        "extract": (TryState.SUCCESS, 1),
        "load": (TryState.SCHEDULED, 2),
        "report": (TryState.NONE, 1),
    }


def test_retry_one_task(db: Db) -> None:
    run_id = db.add_run(RunState.FAILED, FAILED_AT_LOAD)
    assert runs.retry(db.engine, run_id, "load").retried == ["load"]
    with pytest.raises(Conflict, match="only a failed run"):
        runs.retry(db.engine, run_id, "load")


def test_a_task_that_did_not_fail_is_not_retried(db: Db) -> None:
    run_id = db.add_run(RunState.FAILED, FAILED_AT_LOAD)
    with pytest.raises(Conflict) as caught:
        runs.retry(db.engine, run_id, "extract")
    assert "is success" in caught.value.message and caught.value.hint == "failed tasks: load"
    assert _states(db, run_id)[0] == RunState.FAILED


def test_a_failed_run_without_tasks_is_queued_again(db: Db) -> None:
    run_id = db.add_run(RunState.FAILED, {})
    assert runs.retry(db.engine, run_id) == runs.Retried(run_id, RunState.QUEUED, [])
    assert _states(db, run_id) == (RunState.QUEUED, {})


def test_unknown_runs_and_tasks_and_runs_that_did_not_fail(db: Db) -> None:
    with pytest.raises(NotFound, match="no run 'nope'"):
        runs.retry(db.engine, "nope")
    run_id = db.add_run(RunState.FAILED, FAILED_AT_LOAD)
    with pytest.raises(NotFound) as caught:
        runs.retry(db.engine, run_id, "ghost")
    assert caught.value.hint == "its tasks: extract, load, report"
    running = db.add_run(RunState.RUNNING, {"extract": TryState.RUNNING})
    with pytest.raises(Conflict, match="is running"):
        runs.retry(db.engine, running)


def test_a_run_is_named_by_its_id_a_unique_prefix_or_its_short_id(db: Db) -> None:
    from herald.commands.errors import Invalid

    with db.engine.begin() as conn:
        first = runs_store.trigger_run(conn, "manual", {})
        second = runs_store.trigger_run(conn, "manual", {})
    assert runs.short_id(first) == first[-8:] and first.startswith("manual__")
    assert runs.short_id("test__not-a-tag") == "test__not-a-tag"
    assert runs.resolve(db.engine, first) == first
    assert runs.resolve(db.engine, runs.short_id(second)) == second
    assert runs.resolve(db.engine, first[:-4]) == first  # a prefix of the whole id
    with pytest.raises(Invalid) as ambiguous:
        runs.resolve(db.engine, "manual__")
    assert "'manual__' names 2 runs" in ambiguous.value.message
    assert first in ambiguous.value.message and second in ambiguous.value.message
    with pytest.raises(NotFound, match="no run 'zzzz'"):
        runs.resolve(db.engine, "zzzz")
    with pytest.raises(Invalid, match="empty"):
        runs.resolve(db.engine, " ")
    # like characters are text, not patterns
    with pytest.raises(NotFound):
        runs.resolve(db.engine, "%")
