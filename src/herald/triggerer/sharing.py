"""Fair share: which consumers' leases one triggerer should hold, given what it sees.

Every lease round each triggerer reads the live triggerers and the lease owners
(`herald.store.triggerers.beat`) and decides here, without talking to the
others, what to keep, take and give up. The rules make the k live triggerers
converge on about n/k consumers each:

- Quotas are exact: sorted by name, each gets `n // k` and the first `n % k`
  one more, so the quotas add up to n and every triggerer computes the same.
- Keep before take: a triggerer keeps the leases it holds up to its quota, so
  a consumer moves only when the set of live triggerers changes (no flapping).
- Give up only what someone can take: a triggerer over its quota releases just
  as many leases as the under-quota ones lack beyond the free ones.
- Nothing stays orphaned: a free consumer that no under-quota triggerer is
  there to take is taken anyway, beyond the quota (two triggerers briefly
  seeing different DAG folders must not leave a queue unread).
- Preference by rendezvous hash: two triggerers taking free leases at once
  prefer different ones, so they rarely race for the same row.

Pure functions: `plan` is unit-tested without a database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Plan:
    """One round's decision for one triggerer."""

    #: consumers whose leases to take or renew (held and kept, plus free ones taken)
    hold: list[str] = field(default_factory=list)
    #: consumers held beyond the share: renew until their batch in flight is done, then release
    release: list[str] = field(default_factory=list)


def quota(name: str, live: Sequence[str], n: int) -> int:
    """How many of `n` consumers `name` should hold among the `live` triggerers."""
    names = sorted(set(live) | {name})
    k = len(names)
    return n // k + (1 if names.index(name) < n % k else 0)


def rank(name: str, key: str) -> str:
    """The order in which `name` prefers consumers (highest random weight hashing)."""
    return hashlib.sha256(f"{name}\0{key}".encode()).hexdigest()


def plan(me: str, live: Sequence[str], groups: Mapping[str, Sequence[int]], holders: Mapping[int, str | None]) -> Plan:
    """Decide which of the consumers `groups` (key -> watcher ids) `me` holds after this round.

    Args:
        me: this triggerer's name.
        live: the triggerers alive now.
        groups: the consumers to share, each with its watchers' ids.
        holders: each watcher's unexpired lease owner, None when free.
    """
    names = sorted(set(live) | {me})
    n = len(groups)
    mine: list[str] = []
    free: list[str] = []
    held_by: dict[str, int] = dict.fromkeys(names, 0)
    for key, ids in groups.items():
        owners = {holders.get(i) for i in ids}
        others = owners - {None, me}
        if others:
            for other in others:
                if other is not None and other in held_by:
                    held_by[other] += 1
        elif owners == {me}:
            mine.append(key)
        else:
            free.append(key)  # free, or partly ours: a whole group is claimed at once
    mine.sort(key=lambda k: rank(me, k))
    free.sort(key=lambda k: rank(me, k))
    own_quota = quota(me, names, n)
    lacking = sum(max(0, quota(o, names, n) - held_by[o]) for o in names if o != me)
    keep = mine[:own_quota]
    surplus = mine[own_quota:]
    # Release only what the under-quota triggerers cannot take from the free ones.
    give = min(len(surplus), max(0, lacking - len(free)))
    release = surplus[len(surplus) - give :] if give else []
    keep += surplus[: len(surplus) - give]
    take = free[: max(0, own_quota - len(keep))]
    orphans = free[len(take) :]
    # More free than the others lack: nobody else will read the rest.
    take += orphans[: max(0, len(orphans) - lacking)]
    return Plan(hold=keep + take, release=release)
