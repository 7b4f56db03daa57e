"""Requests are built per batch, and a try whose request cannot be built fails alone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from herald.config import normalise_database_url
from herald.scheduler.requests import build_requests_or_fail
from herald.sdk.dag import DAG, Task
from herald.store import tables as t
from herald.store.db import make_engine
from herald.store.migrate import upgrade
from herald.store.states import TryState
from herald.store.types import utcnow


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    found = make_engine(normalise_database_url(database_url))
    upgrade(found)
    yield found
    found.dispose()


class BrokenDag:
    """A DAG object whose tasks cannot be read (what any bad row or object would do to the builder)."""

    dag_id = "broken"

    @property
    def tasks(self) -> Any:
        raise RuntimeError("cannot read this DAG")


def _tries(engine: Engine, dag_ids: list[str]) -> list[int]:
    now = utcnow()
    ids = []
    with engine.begin() as conn:
        for n, dag_id in enumerate(dag_ids):
            run_pk = conn.execute(
                insert(t.dag_run)
                .values(run_id=f"r{n}", dag_id=dag_id, state="running", run_type="manual", conf={}, queued_at=now)
                .returning(t.dag_run.c.id)
            ).scalar_one()
            ids.append(
                conn.execute(
                    insert(t.task_instance)
                    .values(run_pk=run_pk, dag_id=dag_id, task_id="t", state="queued", try_number=2, max_tries=3)
                    .returning(t.task_instance.c.id)
                ).scalar_one()
            )
    return [int(i) for i in ids]


def test_one_try_that_cannot_be_built_fails_alone_with_the_reason(engine: Engine) -> None:
    good = DAG("good")
    good.add_task(Task("t", lambda: None))
    dags: dict[str, Any] = {"good": good, "broken": BrokenDag()}
    ids = _tries(engine, ["good", "broken", "good"])

    with engine.connect() as conn:
        built, failed = build_requests_or_fail(conn, dags, ids)

    assert [r.ti_id for r in built] == [ids[0], ids[2]]
    assert [f.ti_id for f in failed] == [ids[1]]
    assert failed[0].state is TryState.FAILED
    assert failed[0].error is not None and "could not be built: RuntimeError: cannot read this DAG" in failed[0].error
