"""`herald db clean`: delete what is finished and older than a cut-off (the store does the deletes)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from herald.commands.errors import Invalid
from herald.durations import parse_duration
from herald.store import retention
from herald.store.types import utcnow

HINT = "for example --older-than 30d (also 12h, 30m, 45s)"


def older_than(text: str) -> timedelta:
    """The duration of `--older-than` (`7d`, `12h`, `30m`).

    Raises:
        Invalid: not a duration, or not longer than zero.
    """
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise Invalid(str(exc), HINT) from None


def clean(
    engine: Engine, age: timedelta, *, dry_run: bool = False, batch_size: int = retention.BATCH_SIZE
) -> dict[str, int]:
    """Delete (or, with `dry_run`, count) finished runs, their tries and logs, unneeded events and
    replayed dead letters older than `age`, in batches of `batch_size`; returns the counts by kind.

    Raises:
        Invalid: `age` is not longer than zero.
    """
    if age <= timedelta(0):
        raise Invalid("the age must be longer than zero", HINT)
    cutoff = utcnow() - age
    if dry_run:
        with engine.connect() as conn:
            return retention.count(conn, cutoff).as_dict()
    return retention.clean(engine, cutoff, batch_size).as_dict()
