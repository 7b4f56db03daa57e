"""Durations as people write them: `7d`, `12h`, `30m`, `45s`, `1w`, or a combination (`1d12h`)."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["parse_duration"]

_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")


def parse_duration(text: str) -> timedelta:
    """The duration `text` names (a number and a unit w, d, h, m or s, repeated); ValueError if malformed.

    Examples: `30d`, `12h`, `30m`, `1d12h`. A duration must be more than zero.
    """
    cleaned = text.strip().lower().replace(" ", "")
    parts = _PART.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise ValueError(f"{text!r} is not a duration: write a number and a unit, for example 7d, 12h, 30m or 45s")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a duration longer than zero")
    return timedelta(seconds=seconds)
