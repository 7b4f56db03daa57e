"""Assets the Airflow 3 way: aliases, Metadata, outlet extras, references and inlet events."""

import pendulum
from airflow.sdk import Asset, AssetAlias, Metadata, dag, task

orders = Asset("compat_orders", uri="s3://bucket/compat/orders", group="sales")
audit = Asset("compat_audit", uri="s3://bucket/compat/audit")
alias = AssetAlias("compat-alias")


def _describe(events):
    return [
        {
            "asset": [e.asset.name, e.asset.uri, e.asset.group],
            "extra": e.extra,
            "source": [e.source_dag_id, e.source_task_id, e.source_run_id, e.source_map_index],
            "aliases": sorted(a.name for a in e.source_aliases),
        }
        for e in events
    ]


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False)
def compat_asset_producer():
    @task(outlets=[alias])
    def through_alias(*, outlet_events, run_id):
        # an asset no DAG mentions: created by the event, as Airflow does
        outlet_events[alias].add(Asset("s3://bucket/compat/aliased"), extra={"run": run_id})

    @task(outlets=[orders])
    def with_metadata(run_id=None):
        yield Metadata(orders, extra={"run": run_id, "rows": 3})
        return "written"

    @task(outlets=[audit])
    def with_extra(*, outlet_events):
        outlet_events[audit].extra["checked"] = True

    through_alias()
    with_metadata()
    with_extra()


@dag(schedule=[AssetAlias("compat-alias")], start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False)
def compat_alias_consumer():
    @task
    def read(*, triggering_asset_events):
        return {
            "by_alias": _describe(triggering_asset_events[AssetAlias("compat-alias")]),
            "by_asset": len(triggering_asset_events[Asset("s3://bucket/compat/aliased")]),
        }

    read()


@dag(schedule=[Asset.ref(name="compat_orders")], start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False)
def compat_ref_consumer():
    @task
    def read(*, triggering_asset_events):
        return _describe(triggering_asset_events[orders])

    read()


@dag(
    schedule=Asset.ref(uri="s3://bucket/compat/audit"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
)
def compat_uri_ref_consumer():
    @task
    def read(*, triggering_asset_events):
        return _describe(triggering_asset_events[Asset.ref(uri="s3://bucket/compat/audit")])

    read()


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False)
def compat_inlets():
    @task(inlets=[orders, alias])
    def read(*, inlet_events):
        events = inlet_events[orders]
        return {
            "count": len(events),
            "newest_run": events[-1].extra["run"],
            "last_two": [e.extra["run"] for e in events[-2:]],
            "oldest_first": events[0].id < events[-1].id,
            "alias_assets": [e.asset.uri for e in inlet_events[alias]],
        }

    read()


compat_asset_producer()
compat_alias_consumer()
compat_ref_consumer()
compat_uri_ref_consumer()
compat_inlets()
