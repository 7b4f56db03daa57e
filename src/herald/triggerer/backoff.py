"""Exponential back-off with full jitter, for reconnecting to a broker forever."""

from __future__ import annotations

import random


class Backoff:
    """Full jitter: each delay is drawn uniformly from `[0, min(cap, base * 2**n))`.

    Jitter keeps many watchers of one broker from reconnecting in lockstep after
    the broker comes back; drawing from zero (rather than from half the ceiling)
    spreads them the widest, and the growing ceiling still slows a broker that
    stays down.
    """

    def __init__(self, base: float = 0.2, cap: float = 30.0) -> None:
        self.base = base
        self.cap = cap
        self.attempts = 0

    def next(self) -> float:
        """The next delay in seconds."""
        ceiling = min(self.cap, self.base * (2**self.attempts))
        self.attempts += 1
        return random.uniform(0, ceiling)

    def reset(self) -> None:
        """Start again from the base delay (after a successful connection)."""
        self.attempts = 0
