"""Replaying dead letters: a fixed DAG file's trigger gets the stored message again.

The API, the UI or `herald dead-letters replay ID` mark a dead letter
`replay_requested_at` (`herald.commands.dead_letters`) and wake the `notify.REPLAY`
channel; the triggerer that holds the watcher's lease runs the raw
body through the watcher's trigger as it is now (its `apply_function` and
filter), stores the event in the same transaction that marks the dead letter
replayed, and wakes the scheduler. A message that fails again keeps its dead
letter, with the new error.
"""

from __future__ import annotations

from sqlalchemy import Engine

from herald import notify
from herald.store import events
from herald.store.storable import DEFAULT_MAX_DEPTH, clean_text
from herald.store.sync import WatcherSpec
from herald.store.types import utcnow
from herald.triggerer.admission import DEFAULT_APPLY_TIMEOUT, admit_within


def replay_requested(
    engine: Engine,
    specs: dict[int, WatcherSpec],
    consumers: dict[int, list[str]],
    max_depth: int = DEFAULT_MAX_DEPTH,
    timeout: float = DEFAULT_APPLY_TIMEOUT,
) -> int:
    """Replay the requested dead letters of the watchers in `specs`; returns how many became events.

    Each goes through the same admission as a received message (`max_depth`, and
    `timeout` for the `apply_function`).
    """
    created = 0
    for letter in events.requested_replays(engine, list(specs)):
        spec = specs[letter.watcher_id]
        event: events.NewEvent | None = None
        error: str | None = None
        try:
            keep, payload, encoding = admit_within(spec.watcher.trigger, letter.message, max_depth, timeout)
        except Exception as exc:
            error = clean_text(f"{type(exc).__name__}: {exc}")
        else:
            if keep:
                event = events.watcher_event(spec.id, spec.asset_id, letter.message, payload, encoding, utcnow())
        with engine.begin() as conn:
            made = events.replay_dead_letter(conn, letter.id, event, error, consumers)
            if made:
                notify.notify_in(conn, notify.SCHEDULER)
        created += made
    return created
