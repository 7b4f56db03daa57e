"""`timezone`: the date helpers Airflow DAGs import (`from airflow.utils import timezone`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pendulum

__all__ = ["convert_to_utc", "datetime", "is_localized", "make_aware", "parse", "utc", "utcnow"]

utc = pendulum.UTC


def utcnow() -> dt.datetime:
    """Now, in UTC (a pendulum DateTime)."""
    return pendulum.now("UTC")


def datetime(*args: Any, **kwargs: Any) -> dt.datetime:
    """A datetime in UTC unless `tzinfo` is given (as Airflow's `timezone.datetime`)."""
    kwargs.setdefault("tzinfo", utc)
    return dt.datetime(*args, **kwargs)


def parse(text: str, timezone: Any = None) -> Any:
    """Parse a date string (UTC unless it says otherwise)."""
    return pendulum.parse(text, tz=timezone or utc)


def is_localized(value: dt.datetime) -> bool:
    """True when the datetime has a time zone."""
    return value.utcoffset() is not None


def make_aware(value: dt.datetime, timezone: Any = None) -> dt.datetime:
    """Attach a time zone (UTC by default) to a naive datetime."""
    if is_localized(value):
        raise ValueError(f"make_aware expects a naive datetime, got {value}")
    return value.replace(tzinfo=timezone or utc)


def convert_to_utc(value: dt.datetime | None) -> dt.datetime | None:
    """The same instant in UTC (naive values are taken as UTC)."""
    if value is None:
        return None
    if not is_localized(value):
        return value.replace(tzinfo=utc)
    return value.astimezone(utc)
