from __future__ import annotations

import random

from herald.triggerer.backoff import Backoff


def test_full_jitter_draws_from_zero_to_a_growing_capped_ceiling() -> None:
    random.seed(7)
    backoff = Backoff(base=1.0, cap=8.0)
    ceilings = [1.0, 2.0, 4.0, 8.0, 8.0]
    for ceiling in ceilings:
        assert 0.0 <= backoff.next() <= ceiling
    draws = [Backoff(base=1.0, cap=8.0).next() for _ in range(200)]
    assert min(draws) < 0.25  # full jitter reaches below half the ceiling
    backoff.reset()
    assert backoff.next() <= 1.0
