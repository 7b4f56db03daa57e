"""What a task sees of assets: Metadata it yields, triggering events by alias and reference, and
what a DAG makes of Airflow's timetables."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from herald import DAG, Asset, AssetAlias, AssetEvent, Metadata, OutletEventAccessors
from herald.airflow import EmptyOperator
from herald.scheduler.policy import Pending, plan_runs
from herald.sdk.asset_events import collect_metadata
from herald.sdk.context import TriggeringAssetEvents
from herald.sdk.dag import ALL_QUEUED
from herald.sdk.timetables import (
    AssetAndTimeSchedule,
    AssetOrTimeSchedule,
    AssetTriggeredTimetable,
    CronTriggerTimetable,
)
from herald.store.sync import next_cron

orders, audit, alias = Asset("orders"), Asset("audit", uri="s3://b/audit"), AssetAlias("a")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_metadata_yielded_by_a_task_sets_its_outlet_events_and_the_return_value_stays() -> None:
    outlets = OutletEventAccessors([orders, alias])

    def task() -> Iterator[Metadata]:
        yield Metadata(orders, extra={"rows": 3})
        yield Metadata(orders, extra={"late": True}, alias=alias)
        return "done"  # type: ignore[return-value]

    assert collect_metadata(task(), outlets) == "done"
    assert outlets.extras() == {"orders": {"rows": 3, "late": True}}
    assert [(e.alias.name, e.asset.name, e.extra) for e in outlets.alias_events()] == [("a", "orders", {"late": True})]
    assert collect_metadata(7, outlets) == 7  # a plain result is left alone
    with pytest.raises(KeyError, match="not an outlet"):
        collect_metadata((x for x in [Metadata(audit)]), outlets)


def test_triggering_events_are_found_by_asset_name_reference_and_alias() -> None:
    through = AssetEvent(1, Asset("made", uri="s3://b/made"), NOW, source_aliases=(alias,))
    direct = AssetEvent(2, audit, NOW)
    events = TriggeringAssetEvents({through.asset: [through], audit: [direct]})
    assert events[alias] == [through] and events[AssetAlias("other")] == []
    assert events[Asset.ref(uri="s3://b/audit")] == [direct] and events[Asset.ref(name="made")] == [through]
    assert events["audit"] == [direct] and events[orders] == []


def test_alias_and_uri_keys_make_a_condition_ready() -> None:
    item = Pending(1, 10, "made", NOW, frozenset({"alias:a", "uri:s3://b/made"}))
    assert plan_runs(alias, None, [item], NOW)[0] == [[item]]
    assert plan_runs(Asset.ref(uri="s3://b/made"), None, [item], NOW)[0] == [[item]]
    assert plan_runs(AssetAlias("b"), None, [item], NOW)[0] == []
    other = Pending(2, 11, "made", NOW, frozenset({"alias:a"}))
    assert plan_runs(alias, ALL_QUEUED, [item, other], NOW)[0] == [[item, other]]


def _dag(schedule: object) -> DAG:
    with DAG("d", schedule=schedule) as dag:  # type: ignore[arg-type]
        EmptyOperator(task_id="t")
    return dag


def test_a_dag_takes_airflows_timetables() -> None:
    either = _dag(
        AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 6 * * *", timezone="Europe/Paris"), assets=[orders])
    )
    assert (either.cron, either.cron_timezone, either.asset_condition, either.gate_condition) == (
        "0 6 * * *",
        "Europe/Paris",
        orders,
        None,
    )
    assert either.schedule_description()["asset_or_time"]["batch_asset_events"] is False
    gated = _dag(AssetAndTimeSchedule(timetable="@daily", assets=[orders, audit]))
    assert gated.asset_condition is None and gated.schedule_condition == gated.gate_condition
    assert _dag(AssetTriggeredTimetable(orders, batch_asset_events=True)).batch == ALL_QUEUED
    assert _dag(AssetTriggeredTimetable(orders)).batch is None
    cron = _dag(CronTriggerTimetable("0 * * * *", interval=timedelta(hours=1)))
    assert cron.cron == "0 * * * *" and cron.cron_interval == 3600 and cron.asset_condition is None
    # 06:00 in Paris is 05:00 UTC in winter
    assert next_cron("0 6 * * *", NOW, "Europe/Paris") == datetime(2026, 1, 1, 5, tzinfo=UTC)
    with pytest.raises(ValueError, match="timetable"):
        DAG("d", timetable=CronTriggerTimetable("@daily"))
