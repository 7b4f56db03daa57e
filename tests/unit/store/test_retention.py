"""`store.retention` (SQLite and PostgreSQL): old finished runs go with their tries, events nobody
needs go, replayed dead letters go; an unfinished run, an event it or a waiting DAG still needs,
and anything newer than the cut-off stay. A dry run counts exactly what a clean then deletes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select

from herald.commands import retention as commands
from herald.commands.errors import Invalid
from herald.store import retention
from herald.store import tables as t
from herald.store.states import RunState, RunType, TryState
from herald.store.types import utcnow

NOW = utcnow()
OLD = NOW - timedelta(days=3)
CUTOFF = NOW - timedelta(days=1)


class Seed:
    """Rows as the processes write them, with chosen times."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        with engine.begin() as conn:
            self.asset = conn.execute(
                insert(t.asset).values(name="a", uri="a", extra={}, created_at=OLD).returning(t.asset.c.id)
            ).scalar_one()

    def event(self, at: datetime, *, queued_for: str | None = None) -> int:
        with self.engine.begin() as conn:
            event_id = int(
                conn.execute(
                    insert(t.asset_event)
                    .values(asset_id=self.asset, source="api", extra={}, timestamp=at)
                    .returning(t.asset_event.c.id)
                ).scalar_one()
            )
            if queued_for is not None:
                conn.execute(
                    insert(t.event_queue).values(
                        dag_id=queued_for, asset_id=self.asset, event_id=event_id, queued_at=at
                    )
                )
        return event_id

    def run(self, state: RunState, at: datetime, events: list[int], tries: int = 2) -> int:
        with self.engine.begin() as conn:
            pk = int(
                conn.execute(
                    insert(t.dag_run)
                    .values(
                        run_id=f"r{at.timestamp()}-{state}-{events}",
                        dag_id="d",
                        state=state,
                        run_type=RunType.ASSET_TRIGGERED,
                        conf={},
                        queued_at=at,
                        started_at=at,
                        ended_at=at if state.finished else None,
                    )
                    .returning(t.dag_run.c.id)
                ).scalar_one()
            )
            for e in events:
                conn.execute(insert(t.dag_run_event).values(run_pk=pk, event_id=e))
            for i in range(tries):
                ti_id = conn.execute(
                    insert(t.task_instance)
                    .values(
                        run_pk=pk,
                        dag_id="d",
                        task_id=f"t{i}",
                        state=TryState.SUCCESS if state.finished else TryState.RUNNING,
                        try_number=1,
                        max_tries=1,
                        log="a log line\n",
                        result={"n": i},
                    )
                    .returning(t.task_instance.c.id)
                ).scalar_one()
                conn.execute(insert(t.task_requeue).values(ti_id=ti_id, try_number=1, reason="lost", requeued_at=at))
        return pk

    def dead_letter(self, at: datetime, *, replayed: bool) -> int:
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    insert(t.dead_letter)
                    .values(
                        source="local://q",
                        body=b"{",
                        headers={},
                        message={},
                        error="bad",
                        created_at=at,
                        replayed_at=at if replayed else None,
                    )
                    .returning(t.dead_letter.c.id)
                ).scalar_one()
            )

    def ids(self, table: Any) -> set[int]:
        with self.engine.connect() as conn:
            return {int(i) for i in conn.execute(select(table.c.id)).scalars()}

    def count(self, table: Any) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.mark.parametrize("batch_size", [1, 1000])
def test_a_clean_deletes_only_what_nothing_needs(engine: Engine, batch_size: int) -> None:
    s = Seed(engine)
    # Given: an old finished run and the event only it consumed; an old event nobody consumed.
    gone_event = s.event(OLD)
    gone_run = s.run(RunState.SUCCESS, OLD, [gone_event])
    orphan_event = s.event(OLD)
    failed_event = s.event(OLD)
    gone_failed = s.run(RunState.FAILED, OLD, [failed_event], tries=1)
    # An old run still running, with its event, which an old finished run consumed too.
    held_event = s.event(OLD)
    unfinished = s.run(RunState.RUNNING, OLD, [held_event])
    shared = s.run(RunState.SUCCESS, OLD, [held_event], tries=1)
    # An old event a DAG still waits on (a partly satisfied `a & b`, a filling EventBatch).
    waiting_event = s.event(OLD, queued_for="needs_a_and_b")
    # A recent run that consumed an old event; a recent event.
    old_event_of_new_run = s.event(OLD)
    recent_run = s.run(RunState.SUCCESS, NOW, [old_event_of_new_run])
    recent_event = s.event(NOW)
    # Dead letters: replayed long ago (gone), never replayed (stays), replayed recently (stays).
    replayed = s.dead_letter(OLD, replayed=True)
    kept_letters = {s.dead_letter(OLD, replayed=False), s.dead_letter(NOW, replayed=True)}

    with engine.connect() as conn:
        planned = retention.count(conn, CUTOFF)
    done = retention.clean(engine, CUTOFF, batch_size, pause=0)

    # Then: a dry run counted exactly what the clean deleted.
    assert planned == done == retention.Cleaned(runs=3, tries=4, events=3, dead_letters=1)
    assert s.ids(t.dag_run) == {unfinished, recent_run}
    assert gone_run not in s.ids(t.dag_run) and gone_failed not in s.ids(t.dag_run) and shared not in s.ids(t.dag_run)
    assert s.ids(t.asset_event) == {held_event, waiting_event, old_event_of_new_run, recent_event}
    assert {gone_event, orphan_event, failed_event}.isdisjoint(s.ids(t.asset_event))
    assert s.count(t.task_instance) == 4  # the unfinished run's and the recent run's
    assert s.count(t.task_requeue) == 4
    assert s.count(t.dag_run_event) == 2
    assert s.count(t.event_queue) == 1
    assert replayed not in s.ids(t.dead_letter) and s.ids(t.dead_letter) == kept_letters

    # A second clean finds nothing more.
    assert retention.clean(engine, CUTOFF, batch_size, pause=0) == retention.Cleaned()


def test_once_an_unfinished_run_finishes_and_ages_its_event_goes_too(engine: Engine) -> None:
    s = Seed(engine)
    event = s.event(OLD)
    s.run(RunState.RUNNING, OLD, [event])
    assert retention.clean(engine, CUTOFF, pause=0) == retention.Cleaned()
    with engine.begin() as conn:
        conn.execute(t.dag_run.update().values(state=RunState.SUCCESS, ended_at=OLD))
    assert retention.clean(engine, CUTOFF, pause=0) == retention.Cleaned(runs=1, tries=2, events=1)


def test_the_command_reads_a_duration_and_a_dry_run_deletes_nothing(engine: Engine) -> None:
    s = Seed(engine)
    s.run(RunState.SUCCESS, OLD, [s.event(OLD)])
    assert commands.older_than("2d") == timedelta(days=2)
    for bad in ("", "2", "2x", "0h", "-1d"):
        with pytest.raises(Invalid):
            commands.older_than(bad)
    assert commands.clean(engine, timedelta(days=2), dry_run=True) == {
        "runs": 1,
        "tries": 2,
        "events": 1,
        "dead_letters": 0,
        "watcher_samples": 0,
    }
    assert s.count(t.dag_run) == 1
    assert commands.clean(engine, timedelta(days=4)) == {
        "runs": 0,
        "tries": 0,
        "events": 0,
        "dead_letters": 0,
        "watcher_samples": 0,
    }
    assert commands.clean(engine, timedelta(days=2))["runs"] == 1
    assert s.count(t.dag_run) == 0
