"""Migration 0008 and the store's writes for mapped tasks, run dates and run timeouts, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, select
from sqlalchemy.exc import IntegrityError

from herald.store import runs as store_runs
from herald.store import tables as t
from herald.store import tries as store_tries
from herald.store.migrate import alembic_config
from herald.store.states import RunState, RunType, TryState

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_the_migrated_tables_match_their_declaration(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
    assert [d for d in diff if "task_instance" in repr(d) or "dag_run" in repr(d)] == []


def test_downgrade_to_0007_and_back(engine: Engine) -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0007")
    assert "map_index" not in {c["name"] for c in inspect(engine).get_columns("task_instance")}
    assert "logical_date" not in {c["name"] for c in inspect(engine).get_columns("dag_run")}
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    assert "map_index" in {c["name"] for c in inspect(engine).get_columns("task_instance")}


def _run_with_task(engine: Engine, task_id: str = "mapped") -> tuple[int, int]:
    with engine.begin() as conn:
        [pk] = store_runs.create_runs(conn, ["d"], RunType.SCHEDULED, NOW, logical_dates=[NOW - timedelta(hours=1)])
        store_runs.start(conn, [pk], NOW)
        store_tries.insert_tries(
            conn,
            [{"run_pk": pk, "dag_id": "d", "task_id": task_id, "state": TryState.SCHEDULED, "max_tries": 2}],
        )
        [ti_id] = store_tries.scheduled_in(conn, [pk])
    return pk, ti_id


def test_a_cron_run_keeps_its_tick_as_logical_date_and_data_interval(engine: Engine) -> None:
    pk, _ = _run_with_task(engine)
    with engine.connect() as conn:
        row = conn.execute(select(t.dag_run).where(t.dag_run.c.id == pk)).one()
    tick = NOW - timedelta(hours=1)
    assert (row.logical_date, row.data_interval_start, row.data_interval_end) == (tick, tick, tick)
    assert row.run_id.startswith(f"scheduled__{tick.isoformat()}")
    with engine.begin() as conn:
        manual = store_runs.trigger_run(conn, "d", {})
        event = store_runs.trigger_run(conn, "d", {}, run_type=RunType.REPLAY)
        dates = dict(conn.execute(select(t.dag_run.c.run_id, t.dag_run.c.logical_date)).all())
        assert store_runs.last_logical_date(conn, "d") == tick
    assert dates[manual] is not None and dates[event] is None


def test_expanding_a_try_makes_one_try_per_map_index_once(engine: Engine) -> None:
    pk, ti_id = _run_with_task(engine)
    with engine.begin() as conn:
        ids = store_tries.expand(conn, ti_id, 3)
        assert store_tries.expand(conn, ti_id, 3) == []  # already expanded: a second pass does nothing
        rows = conn.execute(
            select(t.task_instance.c.id, t.task_instance.c.map_index, t.task_instance.c.state).order_by(
                t.task_instance.c.map_index
            )
        ).all()
    assert ids[0] == ti_id and len(ids) == 3
    assert [(r.map_index, r.state) for r in rows] == [(0, "scheduled"), (1, "scheduled"), (2, "scheduled")]
    with engine.begin() as conn, pytest.raises(IntegrityError):
        store_tries.insert_tries(
            conn,
            [{"run_pk": pk, "dag_id": "d", "task_id": "mapped", "state": "none", "max_tries": 1, "map_index": 1}],
        )


def test_a_retry_runs_only_failed_map_indexes_and_folds_mapped_downstream_tasks(engine: Engine) -> None:
    pk, ti_id = _run_with_task(engine)
    with engine.begin() as conn:
        ids = store_tries.expand(conn, ti_id, 2)
        store_tries.insert_tries(
            conn, [{"run_pk": pk, "dag_id": "d", "task_id": "down", "state": TryState.NONE, "max_tries": 1}]
        )
        down = conn.execute(select(t.task_instance.c.id).where(t.task_instance.c.task_id == "down")).scalar_one()
        store_tries.expand(conn, int(down), 1)  # pretend it was expanded too
        conn.execute(t.task_instance.update().where(t.task_instance.c.id == ids[0]).values(state="success"))
        conn.execute(t.task_instance.update().where(t.task_instance.c.id == ids[1]).values(state="failed"))
        conn.execute(
            t.task_instance.update().where(t.task_instance.c.task_id == "down").values(state="upstream_failed")
        )
        assert store_tries.clear(conn, pk, {"mapped": 1}, ["down"]) == 1
        rows = conn.execute(
            select(t.task_instance.c.task_id, t.task_instance.c.map_index, t.task_instance.c.state).order_by(
                t.task_instance.c.task_id, t.task_instance.c.map_index
            )
        ).all()
    assert [tuple(r) for r in rows] == [("down", -1, "none"), ("mapped", 0, "success"), ("mapped", 1, "scheduled")]


def test_a_timed_out_run_skips_its_unfinished_tries_and_names_those_to_stop(engine: Engine) -> None:
    pk, ti_id = _run_with_task(engine)
    with engine.begin() as conn:
        ids = store_tries.expand(conn, ti_id, 3)
        store_tries.queue(conn, ids)
        store_tries.mark_started(conn, [(ids[0], NOW, "w")])
        conn.execute(t.task_instance.update().where(t.task_instance.c.id == ids[2]).values(state="success"))
        expired, _ = store_runs.timed_out(conn, {"d": 60.0}, NOW + timedelta(seconds=61))
        assert expired == [pk]
        assert store_runs.timed_out(conn, {"d": 60.0}, NOW + timedelta(seconds=30)) == ([], NOW + timedelta(seconds=60))
        handed = store_tries.skip_unfinished(conn, expired, NOW, "the run timed out (dagrun_timeout)")
        store_runs.finish(conn, RunState.FAILED, expired, NOW)
        states = dict(conn.execute(select(t.task_instance.c.id, t.task_instance.c.state)).all())
        assert store_tries.not_running(conn, [ids[0]]) == [ids[0]]
    assert sorted(handed) == sorted(ids[:2])  # running and queued: their executor stops them
    assert [states[i] for i in ids] == ["skipped", "skipped", "success"]


def test_active_tries_are_counted_per_dag_across_runs(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            t.dag.insert().values(dag_id="d", fileloc="", task_ids=[], tasks=[], is_paused=False, updated_at=NOW)
        )
    _, first = _run_with_task(engine)
    _, second = _run_with_task(engine, "other")
    with engine.begin() as conn:
        store_tries.queue(conn, [first, second])
        store_tries.mark_started(conn, [(first, NOW, "w")])
        assert store_tries.active_counts(conn, ["d"]) == {"d": 2}
        assert store_tries.dags_of(conn, [first, second]) == {first: "d", second: "d"}
