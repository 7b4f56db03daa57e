"""Airflow's asset model: name/URI derivation, URI normalisation, refs, aliases, @asset, Metadata, accessors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from herald import Asset, AssetAlias, AssetAll, AssetAny, AssetEvent, Metadata, asset
from herald.sdk.asset_events import InletEventsAccessors, OutletEventAccessors, call_collecting_metadata
from herald.sdk.assets import AssetNameRef, AssetUriRef, Dataset, Model
from herald.sdk.context import AssetEvent as ContextAssetEvent
from herald.sdk.context import set_current_context
from herald.sdk.dag import collect_dags


def test_name_or_uri_alone_gives_the_other_as_airflow_does() -> None:
    assert (Asset("orders").name, Asset("orders").uri) == ("orders", "orders")
    by_uri = Asset(uri="s3://bucket/orders")
    assert (by_uri.name, by_uri.uri) == ("s3://bucket/orders", "s3://bucket/orders")
    both = Asset("orders", "s3://bucket/orders")
    assert (both.name, both.uri, both.group, both.extra) == ("orders", "s3://bucket/orders", "asset", {})
    assert Asset("orders", uri="x", group="g", extra={"a": 1}).group == "g"
    assert Dataset("d").group == "dataset" and Model("m").group == "model"
    with pytest.raises(TypeError, match="either 'name' or 'uri'"):
        Asset()


def test_uri_is_normalised_and_the_name_keeps_what_was_written() -> None:
    a = Asset(uri="S3://bucket/path/?b=2&a=1#fragment")
    assert a.uri == "s3://bucket/path?a=1&b=2"
    assert a.name == "S3://bucket/path/?b=2&a=1#fragment"
    assert Asset(uri="x-custom://Keep/Me/").uri == "x-custom://Keep/Me/"
    assert Asset(uri="file:///").uri == "file:///"
    with pytest.warns(UserWarning, match="should not contain a password"):
        assert Asset(uri="postgres://user:secret@host/db").uri == "postgres://host/db"
    with pytest.raises(ValueError, match="'airflow' is reserved"):
        Asset(uri="airflow://x")


@pytest.mark.parametrize("name", ["", "   ", "self", "context", "x" * 1501])
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        Asset(name)


def test_equality_is_by_name_and_conditions_flatten() -> None:
    assert Asset("a", uri="u1") == Asset("a", uri="u2") and hash(Asset("a")) == hash(Asset("a", uri="z"))
    a, b, c = Asset("a"), Asset("b"), Asset("c")
    both = a & b & c
    assert isinstance(both, AssetAll) and both.objects == (a, b, c)
    either = a | b | c
    assert isinstance(either, AssetAny) and either.objects == (a, b, c)
    assert both.evaluate({"a", "b", "c"}) and not both.evaluate({"a", "b"}) and either.evaluate({"c"})


def test_refs_by_name_or_uri_and_never_both() -> None:
    assert Asset.ref(name="orders") == AssetNameRef("orders")
    assert Asset.ref(uri="S3://b/k/") == AssetUriRef("s3://b/k")
    with pytest.raises(TypeError, match="not both"):
        Asset.ref(name="a", uri="b")
    with pytest.raises(TypeError, match="'name' or 'uri'"):
        Asset.ref()
    cond = Asset.ref(name="a") | AssetAlias("al")
    assert list(cond.iter_asset_refs()) == [AssetNameRef("a")]
    assert list(cond.iter_asset_aliases()) == [AssetAlias("al")]
    assert AssetAlias("al").group == "asset" and AssetAlias("al", group="g").describe() == {
        "alias": {"name": "al", "group": "g"}
    }


def test_asset_event_lives_in_asset_events_and_keeps_the_old_import() -> None:
    assert ContextAssetEvent is AssetEvent


def test_watcher_events_leave_source_fields_none_and_task_events_fill_them() -> None:
    wire = {
        "id": 7,
        "asset": {"name": "orders", "uri": "s3://b/o", "group": "asset", "extra": {"k": 1}},
        "timestamp": "2026-12-03T10:00:00+00:00",
        "extra": {"payload": {"id": 1}},
        "source": "watcher:orders_sqs",
    }
    event = AssetEvent.from_wire(wire)
    assert (event.asset.name, event.asset.uri, event.asset.extra, event.payload) == (
        "orders",
        "s3://b/o",
        {"k": 1},
        {"id": 1},
    )
    assert (event.source_dag_id, event.source_task_id, event.source_run_id, event.source_map_index) == (None,) * 4
    assert event.source_aliases == ()
    legacy = AssetEvent.from_wire(
        {
            "id": 8,
            "asset": "orders",
            "uri": "orders",
            "timestamp": "2026-12-03T10:00:00+00:00",
            "extra": {"source_run": {"dag_id": "d", "run_id": "r", "task_id": "t"}},
            "source": "task:d.t",
        }
    )
    assert (legacy.source_dag_id, legacy.source_task_id, legacy.source_run_id, legacy.source_map_index) == (
        "d",
        "t",
        "r",
        -1,
    )
    again = AssetEvent.from_wire({**event.to_wire(), "source_aliases": [{"name": "al", "group": "asset"}]})
    assert again.source_aliases == (AssetAlias("al"),) and again.timestamp == datetime(2026, 12, 3, 10, tzinfo=UTC)


def test_outlet_events_set_extra_and_add_through_an_alias() -> None:
    orders, alias = Asset("orders"), AssetAlias("daily")
    outlets = OutletEventAccessors([orders, alias])
    outlets[orders].extra["rows"] = 3
    outlets[alias].add(Asset("orders_2026_12_03"), extra={"day": "2026-12-03"})
    assert outlets.extras() == {"orders": {"rows": 3}}
    assert outlets.to_wire()["alias_events"] == [
        {
            "alias": {"name": "daily", "group": "asset"},
            "asset": {"name": "orders_2026_12_03", "uri": "orders_2026_12_03", "group": "asset", "extra": {}},
            "extra": {"day": "2026-12-03"},
        }
    ]
    assert outlets.for_asset(name="orders") is outlets[orders] and list(outlets) == [orders, alias]
    with pytest.raises(KeyError, match="not an outlet"):
        outlets[Asset("other")]
    with pytest.raises(TypeError, match="is an asset"):
        outlets[orders].add(Asset("x"))


def test_yielded_metadata_sets_extra_and_the_return_value_is_the_result() -> None:
    orders, alias = Asset("orders"), AssetAlias("a")

    def produce() -> Any:
        yield Metadata(orders, extra={"rows": 10})
        yield Metadata(orders, extra={"day": "d"}, alias=alias)
        yield "not metadata"
        return "done"

    outlets = OutletEventAccessors([orders, alias])
    assert call_collecting_metadata(produce, (), {}, outlets) == "done"
    assert outlets.extras() == {"orders": {"rows": 10, "day": "d"}}
    assert [e.extra for e in outlets.alias_events()] == [{"day": "d"}]
    assert call_collecting_metadata(lambda x: x + 1, (1,), {}, outlets) == 2
    with pytest.raises(TypeError, match="needs an Asset"):
        Metadata("orders", extra={})  # type: ignore[arg-type]


def _event(i: int, name: str = "orders") -> dict[str, Any]:
    return {
        "id": i,
        "asset": {"name": name, "uri": "s3://b/o"},
        "timestamp": f"2026-12-03T10:00:0{i}+00:00",
        "extra": {"n": i},
    }


def test_inlet_events_newest_last_sliceable_by_asset_ref_alias_or_position() -> None:
    orders, alias = Asset("orders"), AssetAlias("al")
    request = {
        "assets": {
            "orders": {
                "asset": {"name": "orders", "uri": "s3://b/o", "extra": {"x": 1}},
                "events": [_event(1), _event(2), _event(3)],
            }
        },
        "aliases": {"al": [_event(4, "dyn")]},
    }
    inlets = InletEventsAccessors.from_wire([Asset.ref(name="orders"), alias], request)
    events = inlets[orders]
    assert [e.id for e in events] == [1, 2, 3] and events[-1].extra == {"n": 3}
    assert [e.id for e in events[-2:]] == [2, 3]
    assert [e.id for e in inlets[0]] == [1, 2, 3]
    assert [e.id for e in inlets[Asset.ref(uri="s3://b/o")]] == [1, 2, 3]
    assert [e.asset.name for e in inlets[alias]] == ["dyn"]
    assert inlets.asset("orders") is not None and inlets.asset("orders").extra == {"x": 1}  # type: ignore[union-attr]
    with pytest.raises(KeyError, match="not an inlet"):
        inlets[Asset("elsewhere")]


# @asset refuses nested functions, as Airflow does: the functions it decorates live at module level.
def raw_orders(self: Asset, context: dict[str, Any]) -> Any:
    yield Metadata(self, extra={"rows": 2})
    return context["run_id"]


def order_report(raw_orders: Asset) -> str:
    return raw_orders.uri


def both() -> None:
    return None


def test_asset_decorator_builds_a_one_task_dag_emitting_its_asset() -> None:
    with collect_dags() as found:
        raw = asset(schedule=None, uri="s3://bucket/raw", group="raw", extra={"owner": "ingest"})(raw_orders)
        asset(schedule=raw)(order_report)

    assert isinstance(raw, Asset) and (raw.name, raw.uri, raw.group, raw.extra) == (
        "raw_orders",
        "s3://bucket/raw",
        "raw",
        {"owner": "ingest"},
    )
    assert [d.dag_id for d in found] == ["raw_orders", "order_report"]
    task = found[0].tasks["raw_orders"]
    assert task.outlets == [raw] and found[1].schedule == raw

    # Run the tasks as the worker would: the context installed, yields collected.
    inlets = InletEventsAccessors.from_wire(
        [Asset.ref(name="raw_orders")], {"assets": {"raw_orders": {"asset": raw.to_wire(), "events": []}}}
    )
    set_current_context({"run_id": "r1", "inlet_events": inlets})
    try:
        outlets = OutletEventAccessors(task.outlets)
        assert call_collecting_metadata(task.function, (), {}, outlets) == "r1"
        assert outlets.extras() == {"raw_orders": {"rows": 2}}
        report = found[1].tasks["order_report"]
        assert report.function() == "s3://bucket/raw"
    finally:
        set_current_context(None)


def test_asset_multi_emits_every_outlet_and_refuses_what_it_cannot_do() -> None:
    a, b = Asset("a"), Asset("b")
    with collect_dags() as found:
        multi = asset.multi(outlets=[a, b], schedule=None)(both)
    assert found[0].dag_id == "both" and found[0].tasks["both"].outlets == [a, b]
    assert list(multi.iter_assets()) == [a, b]
    with pytest.raises(ValueError, match="nested function"):

        def outer() -> None:
            @asset(schedule=None)
            def inner() -> None: ...

        outer()
    with pytest.raises(TypeError, match=r"wildcard '\*\*kw'"):
        asset(schedule=None)(_wild)
    with pytest.raises(TypeError, match="not supported by Herald"), collect_dags():
        asset(schedule=None, on_failure_callback=print)(both)

    with pytest.raises(TypeError, match="unknown argument"):
        asset(schedule=None, retries=3)  # type: ignore[call-arg]


def _wild(**kw: Any) -> None: ...


def test_timetables_combining_cron_and_assets_validate_and_describe_themselves() -> None:
    from herald.sdk.timetables import AssetAndTimeSchedule, AssetOrTimeSchedule, CronTriggerTimetable

    a, b = Asset("a"), Asset("b")
    both = AssetAndTimeSchedule(timetable=CronTriggerTimetable("0 6 * * *", timezone="Europe/Paris"), assets=[a, b])
    assert both.describe() == {
        "asset_and_time": {
            "timetable": {"cron": "0 6 * * *", "timezone": "Europe/Paris", "interval": 0.0},
            "assets": {"all": ["a", "b"]},
        }
    }
    either = AssetOrTimeSchedule(timetable="@daily", assets=a | b)
    assert either.asset_condition == a | b and either.timetable.cron == "@daily"
    with pytest.raises(ValueError, match="not a valid cron"):
        CronTriggerTimetable("every day")
    with pytest.raises(ValueError, match="unknown time zone"):
        CronTriggerTimetable("@daily", timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="run_immediately"):
        CronTriggerTimetable("@daily", run_immediately=True)
    with pytest.raises(TypeError, match="non-empty list"):
        AssetAndTimeSchedule(timetable="@daily", assets=[])
