"""Migration 0016: the dag_callback and alert tables, and the exactly-once rules they hold."""

from __future__ import annotations

from datetime import timedelta

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select

from herald.scheduler import ends
from herald.sdk.dag import DAG
from herald.store import callbacks as store_callbacks
from herald.store import runs as store_runs
from herald.store import tables as t
from herald.store.migrate import alembic_config
from herald.store.states import CallbackState, RunState, RunType
from herald.store.types import utcnow


def test_the_migrated_tables_match_their_declarations(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
    assert [d for d in diff if "dag_callback" in repr(d) or "'alert'" in repr(d) or "alert." in repr(d)] == []


def test_downgrade_drops_them_and_upgrade_brings_them_back(engine: Engine) -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    before = ScriptDirectory.from_config(cfg).get_revision("0016").down_revision
    assert isinstance(before, str)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, before)
    assert not {"dag_callback", "alert"} & set(inspect(engine).get_table_names())
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    assert {"dag_callback", "alert"} <= set(inspect(engine).get_table_names())


def _running_run(engine: Engine, dag_id: str) -> int:
    now = utcnow()
    with engine.begin() as conn:
        (pk,) = store_runs.create_runs(conn, [dag_id], RunType.MANUAL, now)
        store_runs.start(conn, [pk], now)
    return pk


def test_a_run_ended_twice_asks_for_its_callback_once(engine: Engine) -> None:
    # Given a DAG with a failure callback and one without, each with a running run
    with_cb = DAG("with_cb", on_failure_callback=lambda context: None)
    without = DAG("without_cb")
    dags = {"with_cb": with_cb, "without_cb": without}
    a, b = _running_run(engine, "with_cb"), _running_run(engine, "without_cb")

    # When two schedulers end the runs (the second finds them ended)
    for _ in range(2):
        with engine.begin() as conn:
            ends.end_runs(conn, dags, RunState.FAILED, [a, b], utcnow(), ends.TASK_FAILURE)

    # Then exactly one request exists, for the DAG with the callback
    with engine.connect() as conn:
        rows = conn.execute(select(t.dag_callback)).all()
    assert [(r.run_pk, r.kind, r.reason, r.state) for r in rows] == [
        (a, "on_failure_callback", "task_failure", CallbackState.PENDING)
    ]


def test_one_runner_claims_a_request_and_a_dead_claim_is_taken_again(engine: Engine) -> None:
    pk = _running_run(engine, "claimed")
    now = utcnow()
    with engine.begin() as conn:
        store_callbacks.request(conn, [(pk, "claimed", "on_success_callback", "success")], now)
    with engine.begin() as conn:
        first = store_callbacks.claim(conn, "runner-a", now, 10, stale_after=60)
    with engine.begin() as conn:
        second = store_callbacks.claim(conn, "runner-b", now, 10, stale_after=60)
    assert [r.run_pk for r in first] == [pk] and second == []

    # runner-a died: after the time limit runner-b takes it, and runner-a's late record is refused
    later = now + timedelta(seconds=61)
    with engine.begin() as conn:
        taken = store_callbacks.claim(conn, "runner-b", later, 10, stale_after=60)
    assert [(r.run_pk, r.attempts) for r in taken] == [(pk, 2)]
    with engine.begin() as conn:
        assert not store_callbacks.record(conn, int(taken[0].id), "runner-a", CallbackState.SUCCESS, "", None, later)
        assert store_callbacks.record(conn, int(taken[0].id), "runner-b", CallbackState.FAILED, "log", "boom", later)
    with engine.connect() as conn:
        (row,) = store_callbacks.of_run(conn, pk)
    assert (row.state, row.error, row.log) == (CallbackState.FAILED, "boom", "log")


def test_requests_given_back_are_claimed_again_by_any_runner(engine: Engine) -> None:
    pk = _running_run(engine, "given_back")
    now = utcnow()
    with engine.begin() as conn:
        store_callbacks.request(conn, [(pk, "given_back", "on_success_callback", "success")], now)
        (claimed,) = store_callbacks.claim(conn, "runner-a", now, 10, stale_after=600)
        store_callbacks.release(conn, [int(claimed.id)], "runner-b")  # not its claim: nothing moves
    with engine.begin() as conn:
        assert store_callbacks.claim(conn, "runner-b", now, 10, stale_after=600) == []
        store_callbacks.release(conn, [int(claimed.id)], "runner-a")
    with engine.begin() as conn:
        (again,) = store_callbacks.claim(conn, "runner-b", now, 10, stale_after=600)
    assert again.id == claimed.id
