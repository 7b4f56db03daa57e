"""Retention: deleting what is finished and older than a cut-off, in small batches.

What goes, once older than the cut-off:

- finished runs (`success`, `failed`, by the time they ended), with their tries
  (logs, return values, XComs), the tries' history (`task_try`) and lost-worker
  requeues, any result not yet applied, and the run-event links;
- events nothing needs any more: no run links them (their runs were deleted
  above, so every run that consumed them was finished and old) and no DAG
  still waits for them in `event_queue` (a partly satisfied `Asset & Asset`
  condition, an `EventBatch` still filling up, a paused DAG); the record of an
  event a `cancel_on=` event cancelled goes with it (`cancelled_event`, ON DELETE
  CASCADE);
- dead letters that were replayed;
- the watchers' health samples (`watcher_sample`).

What never goes: an unfinished run, its tries and its events; an event a
waiting condition holds; a dead letter not replayed; `local://` messages not
consumed yet.

Each batch is one short transaction (`batch_size` runs or events), so the
scheduler's own transactions interleave with a clean; on PostgreSQL the rows
are taken with SKIP LOCKED, so a clean never waits on a row a scheduler holds
(a user's retry of an old run, a second scheduler cleaning at the same time).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, Engine, and_, delete, exists, func, not_, select

from herald.store import tables as t
from herald.store.states import RUN_FINISHED

__all__ = ["BATCH_SIZE", "Cleaned", "Cleaner", "clean", "count"]

#: runs (or events, or dead letters) deleted per transaction
BATCH_SIZE = 1000
#: a pause between two batches, so that a waiting writer (SQLite has one write lock) gets in
BATCH_PAUSE = 0.01
_CHUNK = 500

dr = t.dag_run
ti = t.task_instance
dre = t.dag_run_event
ae = t.asset_event
eq = t.event_queue
dl = t.dead_letter
ws = t.watcher_sample
_FINISHED = sorted(s.value for s in RUN_FINISHED)


@dataclass
class Cleaned:
    """How many rows of each kind were deleted (or, for a dry run, would be)."""

    runs: int = 0
    tries: int = 0
    events: int = 0
    dead_letters: int = 0
    watcher_samples: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts by kind."""
        return asdict(self)


def _old_run(cutoff: datetime) -> ColumnElement[bool]:
    """A run that finished before the cut-off (a finished run with no end time: queued before it)."""
    return and_(dr.c.state.in_(_FINISHED), func.coalesce(dr.c.ended_at, dr.c.queued_at) < cutoff)


def _unneeded_event(cutoff: datetime, *, runs_deleted: bool) -> ColumnElement[bool]:
    """An event older than the cut-off that no waiting DAG holds and no kept run links.

    `runs_deleted`: the old finished runs are gone already (a real clean), so any link
    left is to a run that stays; else (a dry run) links to those runs do not count.
    """
    linked = select(dre.c.event_id).where(dre.c.event_id == ae.c.id)
    if not runs_deleted:
        linked = linked.join(dr, dr.c.id == dre.c.run_pk).where(not_(_old_run(cutoff)))
    return and_(
        ae.c.timestamp < cutoff,
        not_(exists(select(eq.c.id).where(eq.c.event_id == ae.c.id))),
        not_(exists(linked)),
    )


def _replayed(cutoff: datetime) -> ColumnElement[bool]:
    return and_(dl.c.replayed_at.is_not(None), dl.c.created_at < cutoff)


def count(conn: Connection, cutoff: datetime) -> Cleaned:
    """What `clean` would delete now (`herald db clean --dry-run`)."""
    runs = select(dr.c.id).where(_old_run(cutoff))
    return Cleaned(
        runs=int(conn.execute(select(func.count()).select_from(runs.subquery())).scalar_one()),
        tries=int(conn.execute(select(func.count()).where(ti.c.run_pk.in_(runs))).scalar_one()),
        events=int(
            conn.execute(
                select(func.count()).select_from(ae).where(_unneeded_event(cutoff, runs_deleted=False))
            ).scalar_one()
        ),
        dead_letters=int(conn.execute(select(func.count()).select_from(dl).where(_replayed(cutoff))).scalar_one()),
        watcher_samples=int(
            conn.execute(select(func.count()).select_from(ws).where(ws.c.sampled_at < cutoff)).scalar_one()
        ),
    )


def delete_runs(conn: Connection, cutoff: datetime, after: int, limit: int) -> tuple[list[int], int]:
    """One batch: up to `limit` old finished runs with id above `after`, and all that is theirs.

    Returns the runs deleted and how many tries went with them.
    """
    pks = [
        int(i)
        for i in conn.execute(
            select(dr.c.id)
            .where(dr.c.id > after, _old_run(cutoff))
            .order_by(dr.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).scalars()
    ]
    tries = 0
    for i in range(0, len(pks), _CHUNK):
        chunk = pks[i : i + _CHUNK]
        ti_ids = select(ti.c.id).where(ti.c.run_pk.in_(chunk))
        conn.execute(delete(t.task_requeue).where(t.task_requeue.c.ti_id.in_(ti_ids)))
        conn.execute(delete(t.task_result).where(t.task_result.c.ti_id.in_(ti_ids)))
        conn.execute(delete(t.task_try).where(t.task_try.c.run_pk.in_(chunk)))
        tries += int(conn.execute(delete(ti).where(ti.c.run_pk.in_(chunk))).rowcount)
        conn.execute(delete(dre).where(dre.c.run_pk.in_(chunk)))
        conn.execute(delete(t.dag_callback).where(t.dag_callback.c.run_pk.in_(chunk)))
        conn.execute(delete(dr).where(dr.c.id.in_(chunk)))
    return pks, tries


def delete_events(conn: Connection, cutoff: datetime, after: int, limit: int) -> tuple[list[int], int]:
    """One batch: up to `limit` unneeded old events with id above `after` (and their alias links).

    Returns the events looked at (the next batch starts after the last) and how many were deleted.
    """
    ids = [
        int(i)
        for i in conn.execute(
            select(ae.c.id)
            .where(ae.c.id > after, _unneeded_event(cutoff, runs_deleted=True))
            .order_by(ae.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).scalars()
    ]
    deleted = 0
    for i in range(0, len(ids), _CHUNK):
        # Checked again in the DELETE: an event a run linked since the SELECT stays. Its
        # alias links (`asset_alias_event`) go with it (ON DELETE CASCADE).
        deleted += int(
            conn.execute(
                delete(ae).where(ae.c.id.in_(ids[i : i + _CHUNK]), _unneeded_event(cutoff, runs_deleted=True))
            ).rowcount
        )
    return ids, deleted


def delete_dead_letters(conn: Connection, cutoff: datetime, after: int, limit: int) -> list[int]:
    """One batch: up to `limit` replayed dead letters created before the cut-off, with id above `after`."""
    ids = [
        int(i)
        for i in conn.execute(
            select(dl.c.id)
            .where(dl.c.id > after, _replayed(cutoff))
            .order_by(dl.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).scalars()
    ]
    if ids:
        conn.execute(delete(dl).where(dl.c.id.in_(ids)))
    return ids


def delete_watcher_samples(conn: Connection, cutoff: datetime, after: int, limit: int) -> list[int]:
    """One batch: up to `limit` watcher samples taken before the cut-off, with id above `after`."""
    ids = [
        int(i)
        for i in conn.execute(
            select(ws.c.id).where(ws.c.id > after, ws.c.sampled_at < cutoff).order_by(ws.c.id).limit(limit)
        ).scalars()
    ]
    if ids:
        conn.execute(delete(ws).where(ws.c.id.in_(ids)))
    return ids


class Cleaner:
    """One clean, a batch at a time: runs first (so that their events are no longer linked),
    then events, then dead letters, then watcher samples.

    A caller that shares a thread with other work (the scheduler's one database thread
    on SQLite) runs one `step` at a time and lets that work in between.
    """

    def __init__(self, cutoff: datetime, batch_size: int = BATCH_SIZE) -> None:
        self.cutoff = cutoff
        self.batch_size = batch_size
        #: what was deleted so far
        self.done = Cleaned()
        self._phase = 0
        self._after = 0

    def step(self, engine: Engine) -> bool:
        """Delete one batch in a transaction of its own; False once nothing is left to delete."""
        while self._phase < 4:
            with engine.begin() as conn:
                if self._phase == 0:
                    ids, tries = delete_runs(conn, self.cutoff, self._after, self.batch_size)
                    self.done.runs += len(ids)
                    self.done.tries += tries
                elif self._phase == 1:
                    ids, deleted = delete_events(conn, self.cutoff, self._after, self.batch_size)
                    self.done.events += deleted
                elif self._phase == 2:
                    ids = delete_dead_letters(conn, self.cutoff, self._after, self.batch_size)
                    self.done.dead_letters += len(ids)
                else:
                    ids = delete_watcher_samples(conn, self.cutoff, self._after, self.batch_size)
                    self.done.watcher_samples += len(ids)
            if ids:
                self._after = ids[-1]
                return True
            self._phase, self._after = self._phase + 1, 0
        return False


def clean(engine: Engine, cutoff: datetime, batch_size: int = BATCH_SIZE, *, pause: float = BATCH_PAUSE) -> Cleaned:
    """Delete what is finished and older than `cutoff`, one batch per transaction; returns what was deleted."""
    cleaner = Cleaner(cutoff, batch_size)
    while cleaner.step(engine):
        time.sleep(pause)
    return cleaner.done
