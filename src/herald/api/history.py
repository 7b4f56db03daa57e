"""A watcher's health over time: its samples (state, lag, received, error) and its error spells."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from herald.api.deps import AUTH_RESPONSES, NOT_FOUND, Conn, Reader
from herald.api.paging import RowId
from herald.commands.errors import NotFound
from herald.store import dead_letters, watcher_samples
from herald.store.types import utcnow

router = APIRouter(responses=AUTH_RESPONSES)


class WatcherSample(BaseModel):
    at: datetime
    state: str
    lag: int | None = Field(description="Messages waiting in the broker, where the broker tells.")
    received: int = Field(description="Messages received since the watcher was created (a running total).")
    error: str | None = Field(description="The error while the watcher was reconnecting or failed.")


class ErrorSpell(BaseModel):
    error: str
    state: str = Field(description="The watcher's state when the error was first seen.")
    first_seen: datetime
    last_seen: datetime
    samples: int = Field(description="How many samples in a row showed it.")


class WatcherHistory(BaseModel):
    watcher_id: int
    interval_seconds: float | None = Field(description="The median time between two samples, if there are two.")
    samples: list[WatcherSample] = Field(description="Oldest first.")
    errors: list[ErrorSpell] = Field(description="Each error with when it was first and last seen, newest first.")


@router.get(
    "/watchers/{watcher_id}/history",
    response_model=WatcherHistory,
    tags=["watchers"],
    responses=NOT_FOUND,
    summary="A watcher's lag and errors over time",
)
def watcher_history(
    watcher_id: RowId,
    _: Reader,
    conn: Conn,
    minutes: Annotated[int, Query(ge=1, le=60 * 24, description="How far back to look.")] = 60,
) -> dict[str, Any]:
    """The samples the triggerer took of the watcher (every HERALD_WATCHER_SAMPLE_INTERVAL seconds,
    kept a day), and its errors with their times."""
    if not dead_letters.watcher_exists(conn, watcher_id):
        raise NotFound(f"no watcher {watcher_id}", "list watchers with GET /api/v1/watchers")
    now = utcnow()
    samples = watcher_samples.history(conn, watcher_id, now - timedelta(minutes=minutes), now + timedelta(seconds=1))
    gaps = sorted((b["at"] - a["at"]).total_seconds() for a, b in itertools.pairwise(samples))
    return {
        "watcher_id": watcher_id,
        "interval_seconds": gaps[len(gaps) // 2] if gaps else None,
        "samples": samples,
        "errors": watcher_samples.error_spells(samples),
    }
