"""Asking the triggerer to replay dead letters through their watcher's trigger.

The triggerer holding the watcher's lease does the replay
(`herald.triggerer.replay.replay_requested`); these commands only mark the
request. On PostgreSQL the triggerer is woken by a NOTIFY sent with the commit;
elsewhere the face wakes it with `notify.notify(url, notify.REPLAY)`.
"""

from __future__ import annotations

from sqlalchemy import Engine

from herald import notify
from herald.commands.errors import Conflict, NotFound
from herald.store import dead_letters

LIST_HINT = "list dead letters with: herald dead-letters list (GET /api/v1/dead-letters)"


def request_replay(engine: Engine, dead_letter_id: int) -> None:
    """Mark one dead letter for replay.

    Raises:
        NotFound: no such dead letter.
        Conflict: it was replayed already, it has no watcher to replay it through, or
            only the start of its body was stored.
    """
    with engine.begin() as conn:
        state = dead_letters.replay_state(conn, dead_letter_id)
        if state is None:
            raise NotFound(f"no dead letter {dead_letter_id}", LIST_HINT)
        if state.replayed_at is not None:
            raise Conflict(f"dead letter {dead_letter_id} was already replayed")
        if state.watcher_id is None:
            raise Conflict(f"dead letter {dead_letter_id} has no watcher to replay it through")
        if state.body_truncated:
            raise Conflict(
                f"dead letter {dead_letter_id} kept only the start of its body (HERALD_MAX_DEAD_LETTER_BODY_BYTES), "
                f"so it cannot be replayed; publish the message again from its source"
            )
        dead_letters.request_replay(conn, dead_letter_id)
        notify.notify_in(conn, notify.REPLAY)


def request_replay_of_watcher(engine: Engine, watcher_id: int) -> int:
    """Mark every dead letter of a watcher that was not replayed yet; returns how many.

    Raises:
        NotFound: no such watcher.
    """
    with engine.begin() as conn:
        if not dead_letters.watcher_exists(conn, watcher_id):
            raise NotFound(
                f"no watcher {watcher_id}", "list watchers with: herald watchers list (GET /api/v1/watchers)"
            )
        count = dead_letters.request_replay_of_watcher(conn, watcher_id)
        if count:
            notify.notify_in(conn, notify.REPLAY)
        return count
