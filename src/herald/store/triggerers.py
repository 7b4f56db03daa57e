"""The `triggerer` table: each running triggerer's heartbeat, and what it sees of the others.

A triggerer writes its row at every lease round (`beat`), in the transaction
that also reads who else is alive and who holds each watcher's lease: the
input of its fair share (`herald.triggerer.sharing`). A clean stop deletes the
row (`forget`), so the others take its share at their next round; a killed
triggerer's row just stops being renewed and counts as dead after `LEASE_TTL`.

What would violate this: a triggerer deciding who is alive from anything but
this table (lease holders alone miss a triggerer that holds nothing yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, insert, select, update

from herald.store import tables as t
from herald.store.states import WatcherState
from herald.store.types import utcnow

#: a lease (and a heartbeat) lasts this long unless renewed: a dead triggerer's
#: watchers move to the live ones within about this time
LEASE_TTL = 10.0
#: rows of triggerers dead this long are deleted (until then listings show them dead)
FORGET_AFTER = timedelta(minutes=10)


@dataclass(frozen=True)
class Identity:
    """Who a triggerer is, as listings show it."""

    name: str
    hostname: str
    pid: int
    started_at: datetime


@dataclass(frozen=True)
class LeaseView:
    """What one lease round sees: the live triggerers and each watcher's live lease owner."""

    #: names of the triggerers alive now, this one included, sorted
    live: list[str]
    #: watcher id -> the owner of its unexpired lease, or None when free or expired
    holders: dict[int, str | None]
    #: the watchers (of those asked about) a user paused
    paused: frozenset[int] = frozenset()


def beat(
    engine: Engine, me: Identity, consuming: Sequence[int], received: int, ids: Sequence[int], ttl: float
) -> LeaseView:
    """Renew this triggerer's heartbeat; return who is alive, who holds the leases of `ids`, which are paused.

    One transaction of four statements whatever the number of watchers: with the
    one UPDATE of `watchers.claim_leases`, a lease round costs the same for one
    watcher or a hundred.

    Args:
        engine: the metadata database.
        me: this triggerer.
        consuming: the watchers it reads now (shown by listings).
        received: the messages it delivered since it started.
        ids: the watchers whose lease holders to return.
        ttl: how long a heartbeat or a lease lasts.
    """
    now = utcnow()
    tr, w = t.triggerer, t.watcher
    values = {"heartbeat_at": now, "consuming": sorted(set(consuming)), "received": received}
    with engine.begin() as conn:
        if not conn.execute(update(tr).where(tr.c.name == me.name).values(**values)).rowcount:
            conn.execute(
                insert(tr).values(name=me.name, hostname=me.hostname, pid=me.pid, started_at=me.started_at, **values)
            )
        conn.execute(delete(tr).where(tr.c.heartbeat_at < now - FORGET_AFTER))
        alive_since = now - timedelta(seconds=ttl)
        live = sorted({str(n) for (n,) in conn.execute(select(tr.c.name).where(tr.c.heartbeat_at >= alive_since))})
        holders: dict[int, str | None] = {}
        paused: set[int] = set()
        if ids:
            rows = conn.execute(
                select(w.c.id, w.c.lease_owner, w.c.lease_expires_at, w.c.state).where(w.c.id.in_(list(ids)))
            ).all()
            for wid, owner, expires, state in rows:
                live_lease = owner is not None and expires is not None and expires >= now
                holders[int(wid)] = str(owner) if live_lease else None
                if state == WatcherState.PAUSED:
                    paused.add(int(wid))
    if me.name not in live:
        live = sorted([*live, me.name])  # a clock step backwards must not make it miss itself
    return LeaseView(live=live, holders=holders, paused=frozenset(paused))


def forget(engine: Engine, name: str) -> None:
    """Delete a stopping triggerer's row: the others count it gone at their next round."""
    with engine.begin() as conn:
        conn.execute(delete(t.triggerer).where(t.triggerer.c.name == name))
