"""Fair share of the consumers' leases, decided by each triggerer alone (`triggerer.sharing`)."""

from __future__ import annotations

from collections import Counter

import pytest

from herald.triggerer.sharing import plan, quota

KEYS = {f"queue-{i}": [i] for i in range(10)}


def settle(names: list[str], holders: dict[int, str | None], rounds: int = 6) -> dict[int, str | None]:
    """Let each live triggerer run its rounds in turn (releases take effect at its next round)."""
    pending: dict[str, list[str]] = {}
    for _ in range(rounds):
        for me in names:
            for key in pending.pop(me, []):
                holders.update(dict.fromkeys(KEYS[key], None))
            decided = plan(me, names, KEYS, holders)
            for key in decided.hold:
                if all(holders.get(i) in (None, me) for i in KEYS[key]):
                    holders.update(dict.fromkeys(KEYS[key], me))
            pending[me] = decided.release
    return holders


def shares(holders: dict[int, str | None]) -> Counter[str | None]:
    return Counter(holders.values())


def test_quotas_add_up_to_every_consumer_and_differ_by_one_at_most() -> None:
    live = ["c", "a", "b"]
    assert [quota(name, live, 10) for name in ("a", "b", "c")] == [4, 3, 3]
    assert sum(quota(name, live, 7) for name in live) == 7
    assert quota("a", ["a"], 10) == 10


def test_a_lone_triggerer_takes_every_consumer() -> None:
    assert sorted(plan("a", ["a"], KEYS, {}).hold) == sorted(KEYS)


def test_two_triggerers_split_ten_consumers_five_and_five() -> None:
    holders = settle(["a", "b"], {})
    assert shares(holders) == {"a": 5, "b": 5}


def test_a_third_joining_gets_its_share_from_the_two_over_theirs() -> None:
    holders = settle(["a", "b"], {})
    before = dict(holders)
    holders = settle(["a", "b", "c"], holders)
    assert shares(holders) == {"a": 4, "b": 3, "c": 3}
    # only the consumers handed to the newcomer moved
    assert sum(1 for i, owner in holders.items() if owner != before[i]) == 3


def test_the_consumers_of_a_dead_triggerer_are_taken_by_the_living() -> None:
    holders = settle(["a", "b", "c"], {})
    expired = {i: (None if owner == "c" else owner) for i, owner in holders.items()}
    holders = settle(["a", "b"], expired)
    assert shares(holders) == {"a": 5, "b": 5}


def test_a_settled_share_does_not_move() -> None:
    holders = settle(["a", "b", "c"], {})
    for me in ("a", "b", "c"):
        decided = plan(me, ["a", "b", "c"], KEYS, holders)
        assert decided.release == []
        assert sorted(decided.hold) == sorted(k for k, ids in KEYS.items() if holders[ids[0]] == me)


def test_an_over_share_triggerer_releases_only_what_others_cannot_take_from_the_free() -> None:
    holders: dict[int, str | None] = {i: "a" for i in range(7)}  # b, just arrived, lacks 5; 3 are free
    decided = plan("a", ["a", "b"], KEYS, holders)
    assert len(decided.release) == 2
    assert len(decided.hold) == 5 and all(holders.get(KEYS[k][0]) == "a" for k in decided.hold)


def test_a_free_consumer_nobody_else_will_take_is_taken_beyond_the_share() -> None:
    # b is over its share already (it sees another DAG folder): a must not leave queue-9 unread
    holders: dict[int, str | None] = {i: ("a" if i < 4 else "b") for i in range(9)}
    holders[9] = None
    decided = plan("a", ["a", "b"], KEYS, holders)
    assert "queue-9" in decided.hold


@pytest.mark.parametrize("k", [2, 3, 4, 7])
def test_any_number_of_triggerers_converges_within_one_of_each_other(k: int) -> None:
    names = [f"t{i}" for i in range(k)]
    holders = settle(names, {})
    counts = shares(holders)
    assert None not in counts
    assert sum(counts.values()) == len(KEYS)
    assert max(counts.values()) - min(counts.values()) <= 1
