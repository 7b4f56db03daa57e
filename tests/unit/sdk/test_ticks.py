"""Ticks: the times a cron expression, a period or `@once` names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from herald.sdk.ticks import Ticks

T = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def test_cron_ticks_are_on_the_clock_in_their_time_zone() -> None:
    hourly = Ticks(cron="0 * * * *")
    assert hourly.after(T) == datetime(2024, 5, 1, 13, tzinfo=UTC)
    assert hourly.at_or_before(T) == datetime(2024, 5, 1, 12, tzinfo=UTC)
    on_tick = datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert hourly.at_or_before(on_tick) == on_tick and hourly.at_or_after(on_tick) == on_tick
    paris = Ticks(cron="0 6 * * *", timezone="Europe/Paris")
    assert paris.after(T) == datetime(2024, 5, 2, 4, tzinfo=UTC)  # 06:00 CEST


def test_a_period_counts_from_the_previous_tick() -> None:
    every = Ticks(every=timedelta(minutes=90))
    assert every.after(T) == T + timedelta(minutes=90)
    assert every.at_or_after(T) == T and every.at_or_before(T) == T and every.first_run(T) == T


def test_once_has_no_tick_after_its_first() -> None:
    once = Ticks(once=True)
    assert once.after(T) is None and once.at_or_after(T) == T
