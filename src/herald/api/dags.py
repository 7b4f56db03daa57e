"""DAGs: list with graphs, last runs and next trigger; import errors; trigger, pause, unpause."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from sqlalchemy import Connection

from herald.api.deps import AUTH_RESPONSES, CONFLICT, NOT_FOUND, Conn, Db, Reader, Wake, Writer
from herald.api.paging import PageParams
from herald.api.schemas import Dag, ImportErrorItem, Page, Run, TriggerRunRequest
from herald.commands import dags as dag_commands
from herald.store import queries

router = APIRouter(tags=["dags"], responses=AUTH_RESPONSES)

LAST_RUNS = 10


def expression(schedule: Any) -> str:
    """An asset condition as `a & (b | c)`."""
    if isinstance(schedule, dict) and len(schedule) == 1:
        op, parts = next(iter(schedule.items()))
        joiner = " & " if op == "all" else " | "
        inner = [expression(p) for p in parts]
        return joiner.join(f"({x})" if (" & " in x or " | " in x) else x for x in inner)
    return str(schedule)


def _dags(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = [r["dag_id"] for r in rows]
    graphs = queries.dag_graphs(conn, ids)
    assets = queries.assets_of_dags(conn, ids)
    runs = queries.last_runs_of_dags(conn, ids, LAST_RUNS)
    out = []
    for r in rows:
        dag_assets = assets.get(r["dag_id"], [])
        if dag_assets:
            nxt = {"kind": "asset", "text": expression(r["schedule"]), "next_at": None}
        elif r.get("next_cron_at") or isinstance(r["schedule"], str):
            nxt = {"kind": "cron", "text": str(r["schedule"]), "next_at": r.get("next_cron_at")}
        else:
            nxt = {"kind": "manual", "text": "manual", "next_at": None}
        out.append(
            {
                **r,
                "tasks": graphs.get(r["dag_id"], []),
                "assets": dag_assets,
                "next_trigger": nxt,
                "last_runs": runs.get(r["dag_id"], []),
            }
        )
    return out


def _one(conn: Connection, dag_id: str) -> dict[str, Any]:
    found = queries.list_dags(conn, 1, dag_id=dag_id)
    if not found:
        dag_commands.require_dag(conn, dag_id)  # raises, naming the known DAGs
    return _dags(conn, found)[0]


@router.get("/dags", response_model=Page[Dag], summary="DAGs, by id")
def list_dags(_: Reader, conn: Conn, page: PageParams) -> dict[str, Any]:
    """DAGs with their task graph, schedule, next trigger and newest runs."""
    return page.page(lambda limit, offset: _dags(conn, queries.list_dags(conn, limit, offset=offset)))


@router.get("/dags/{dag_id}", response_model=Dag, responses=NOT_FOUND, summary="One DAG")
def get_dag(dag_id: str, _: Reader, conn: Conn) -> dict[str, Any]:
    return _one(conn, dag_id)


@router.get("/import-errors", response_model=Page[ImportErrorItem], summary="DAG files that failed to import")
def import_errors(_: Reader, conn: Conn, page: PageParams) -> dict[str, Any]:
    """Each file's traceback; every other DAG keeps running."""
    return page.page(lambda limit, offset: queries.list_import_errors(conn, limit, offset=offset))


@router.post(
    "/dags/{dag_id}/runs",
    response_model=Run,
    status_code=status.HTTP_201_CREATED,
    responses=NOT_FOUND,
    summary="Trigger a run",
)
def trigger_dag(dag_id: str, body: TriggerRunRequest, _: Writer, db: Db, wake: Wake) -> dict[str, Any]:
    """Queue a manual run with `conf` (tasks see it as `params`)."""
    run_id = dag_commands.trigger(db, dag_id, body.conf)
    wake()
    with db.connect() as conn:
        run = queries.get_run(conn, run_id)
    assert run is not None
    return run


def _pause(dag_id: str, paused: bool, db: Any, wake: Any) -> dict[str, Any]:
    dag_commands.set_paused(db, dag_id, paused)
    wake()
    with db.connect() as conn:
        return _one(conn, dag_id)


@router.post("/dags/{dag_id}/pause", response_model=Dag, responses={**NOT_FOUND, **CONFLICT}, summary="Pause")
def pause(dag_id: str, _: Writer, db: Db, wake: Wake) -> dict[str, Any]:
    """Stop creating runs; events keep queueing and make their runs on unpause."""
    return _pause(dag_id, True, db, wake)


@router.post("/dags/{dag_id}/unpause", response_model=Dag, responses=NOT_FOUND, summary="Unpause")
def unpause(dag_id: str, _: Writer, db: Db, wake: Wake) -> dict[str, Any]:
    """Resume; events queued meanwhile make their runs."""
    return _pause(dag_id, False, db, wake)
