"""Watchers (health, lag, counters) and dead letters (with a replay request)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from sqlalchemy import Engine

from herald import notify
from herald.api.deps import AUTH_RESPONSES, CONFLICT, NOT_FOUND, Conn, Db, Reader, WakeTriggerers, Writer
from herald.api.paging import PageParams, RowId
from herald.api.schemas import (
    BulkReplay,
    BulkReplayed,
    DeadLetter,
    Page,
    ReplayRequested,
    Triggerer,
    Watcher,
    WatcherPaused,
)
from herald.commands import bulk
from herald.commands import dead_letters as dead_letter_commands
from herald.commands import watchers as watcher_commands
from herald.commands.errors import NotFound
from herald.store import queries

router = APIRouter(responses=AUTH_RESPONSES)


@router.get("/watchers", response_model=Page[Watcher], tags=["watchers"], summary="Watchers, by asset and name")
def list_watchers(_: Reader, conn: Conn, page: PageParams) -> dict[str, Any]:
    """State, last message, received / events / skipped / deduped / dead-lettered, lag, last error."""
    return page.page(lambda limit, offset: queries.list_watchers(conn, limit, offset=offset))


def _paused(db: Engine, wake: WakeTriggerers, watcher_id: int, paused: bool) -> dict[str, Any]:
    done = watcher_commands.set_paused(db, watcher_id, paused)
    wake(notify.WATCHERS)
    return {"id": done.watcher_id, "asset": done.asset, "name": done.name, "state": done.state, "sharing": done.sharing}


@router.post(
    "/watchers/{watcher_id}/pause",
    response_model=WatcherPaused,
    responses={**NOT_FOUND, **CONFLICT},
    tags=["watchers"],
    summary="Pause a watcher",
)
def pause_watcher(watcher_id: RowId, _: Writer, db: Db, wake: WakeTriggerers) -> dict[str, Any]:
    """Stop consuming the watcher's queue: its messages wait in the broker until it is resumed."""
    return _paused(db, wake, watcher_id, True)


@router.post(
    "/watchers/{watcher_id}/resume",
    response_model=WatcherPaused,
    responses={**NOT_FOUND, **CONFLICT},
    tags=["watchers"],
    summary="Resume a paused watcher",
)
def resume_watcher(watcher_id: RowId, _: Writer, db: Db, wake: WakeTriggerers) -> dict[str, Any]:
    """Consume the watcher's queue again, from the messages that waited."""
    return _paused(db, wake, watcher_id, False)


@router.get("/triggerers", response_model=list[Triggerer], tags=["watchers"], summary="Triggerers and what they hold")
def list_triggerers(_: Reader, conn: Conn) -> list[dict[str, Any]]:
    """Each triggerer seen lately: heartbeat, alive, the watchers whose lease it holds and those it reads."""
    from herald.store.triggerers import LEASE_TTL

    return queries.list_triggerers(conn, LEASE_TTL)


@router.get("/dead-letters", response_model=Page[DeadLetter], tags=["dead letters"], summary="Dead letters")
def list_dead_letters(
    _: Reader,
    conn: Conn,
    page: PageParams,
    watcher_id: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="Only those of this watcher.")] = None,
    error: Annotated[str | None, Query(max_length=200, description="Only those whose reason contains this.")] = None,
) -> dict[str, Any]:
    """Messages that could not become events, newest first, with the reason."""
    return page.page(
        lambda limit, offset: queries.list_dead_letters(conn, limit, offset=offset, watcher_id=watcher_id, error=error)
    )


@router.post(
    "/dead-letters/replay",
    response_model=BulkReplayed,
    status_code=status.HTTP_202_ACCEPTED,
    tags=["dead letters"],
    summary="Replay the dead letters of a filter",
)
def replay_dead_letters(body: BulkReplay, _: Writer, db: Db, wake: WakeTriggerers) -> dict[str, Any]:
    """Ask for the replay of every dead letter of the filter (a watcher, a text of the reason)
    not replayed or requested yet."""
    requested = bulk.replay_dead_letters(db, body.watcher_id, body.error)
    if requested:
        wake(notify.REPLAY)
    return {"requested": requested}


@router.get(
    "/dead-letters/{dead_letter_id}",
    response_model=DeadLetter,
    responses=NOT_FOUND,
    tags=["dead letters"],
    summary="One dead letter",
)
def get_dead_letter(dead_letter_id: RowId, _: Reader, conn: Conn) -> dict[str, Any]:
    found = queries.get_dead_letter(conn, dead_letter_id)
    if found is None:
        raise NotFound(f"no dead letter {dead_letter_id}", "list dead letters with GET /api/v1/dead-letters")
    return found


@router.post(
    "/dead-letters/{dead_letter_id}/replay",
    response_model=DeadLetter,
    status_code=status.HTTP_202_ACCEPTED,
    responses={**NOT_FOUND, **CONFLICT},
    tags=["dead letters"],
    summary="Replay a dead letter",
)
def replay_dead_letter(dead_letter_id: RowId, _: Writer, db: Db, wake: WakeTriggerers) -> dict[str, Any]:
    """Ask the triggerer to run the message through its watcher's trigger again (`replay_requested_at`).

    The triggerer owns the trigger (its `apply_function` lives in the DAG file):
    when it has replayed the message, `replayed_at` is set.
    """
    dead_letter_commands.request_replay(db, dead_letter_id)
    wake(notify.REPLAY)
    with db.connect() as conn:
        found = queries.get_dead_letter(conn, dead_letter_id)
    assert found is not None
    return found


@router.post(
    "/watchers/{watcher_id}/dead-letters/replay",
    response_model=ReplayRequested,
    status_code=status.HTTP_202_ACCEPTED,
    responses=NOT_FOUND,
    tags=["dead letters"],
    summary="Replay every dead letter of a watcher",
)
def replay_dead_letters_of_watcher(watcher_id: RowId, _: Writer, db: Db, wake: WakeTriggerers) -> dict[str, Any]:
    """Ask the triggerer to replay every dead letter of the watcher not replayed or requested yet."""
    count = dead_letter_commands.request_replay_of_watcher(db, watcher_id)
    if count:
        wake(notify.REPLAY)
    return {"watcher_id": watcher_id, "requested": count}
