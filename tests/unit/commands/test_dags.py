"""commands/dags.py: pause, unpause, trigger; unknown DAGs and a wrong conf are typed errors."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from herald.commands import dags
from herald.commands.errors import Invalid, NotFound
from herald.store import tables as t
from herald.store.states import RunState
from tests.unit.commands.conftest import Db


def _paused(db: Db, dag_id: str) -> bool:
    return bool(db.one(select(t.dag.c.is_paused).where(t.dag.c.dag_id == dag_id))[0])


def test_pause_and_unpause(db: Db) -> None:
    dags.set_paused(db.engine, "manual", True)
    assert _paused(db, "manual") and not _paused(db, "process_orders")
    dags.set_paused(db.engine, "manual", False)
    assert not _paused(db, "manual")


def test_pausing_an_unknown_dag_names_the_known_ones(db: Db) -> None:
    with pytest.raises(NotFound) as caught:
        dags.set_paused(db.engine, "nope", True)
    assert caught.value.message == "no DAG 'nope'"
    assert caught.value.hint is not None and "manual, process_orders" in caught.value.hint


def test_trigger_queues_a_manual_run_with_its_conf(db: Db) -> None:
    run_id = dags.trigger(db.engine, "manual", {"x": 1})
    run = db.one(select(t.dag_run).where(t.dag_run.c.run_id == run_id))
    assert (run.dag_id, run.state, run.run_type, run.conf) == ("manual", RunState.QUEUED, "manual", {"x": 1})


def test_trigger_refuses_an_unknown_dag_and_a_conf_that_is_not_an_object(db: Db) -> None:
    with pytest.raises(NotFound):
        dags.trigger(db.engine, "nope", {})
    with pytest.raises(Invalid, match="conf must be a JSON object"):
        dags.trigger(db.engine, "manual", [1, 2])
    assert db.all(select(t.dag_run)) == []
