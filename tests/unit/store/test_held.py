"""Events a window or an absence holds before any run exists, read back with their rule (SQLite, PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from herald import DAG, Asset, task
from herald.loader import DagBag
from herald.store import events as store_events
from herald.store import held
from herald.store import tables as t
from herald.store import windows as store_windows
from herald.store.sync import sync_bag
from herald.store.types import utcnow

LEFT, RIGHT, BEATS = Asset("left"), Asset("right"), Asset("beats")


def _bag() -> DagBag:
    dags = {}
    for dag_id, schedule in (
        ("paired", (LEFT & RIGHT).within(60, key="pair")),
        ("silence", BEATS.missing_for(300, key="device")),
    ):
        with DAG(dag_id, schedule=schedule) as dag:
            task(lambda: None, task_id="t")()
        dags[dag_id] = dag
    return DagBag(folder=Path("."), dags=dags)


def test_window_and_absence_events_are_listed_with_the_rule_that_holds_them(engine: Engine) -> None:
    catalog = sync_bag(engine, _bag())
    now = utcnow()
    with engine.begin() as conn:
        made = store_events.insert_events(
            conn,
            [
                {
                    "asset_id": catalog.asset_ids[name],
                    "source": "api",
                    "dedupe_key": None,
                    "extra": {"payload": payload},
                    "timestamp": now,
                }
                for name, payload in (("left", {"pair": "p1"}), ("beats", {"device": "s1"}))
            ],
            catalog.consumers,
            now,
        )
        left_event, beat_event = (e[0] for e in made)
        # the absence's plan turns the beat into its key's last event (and takes it off the queue)
        store_windows.saw(conn, "silence", {"s1": (now, beat_event)})
        conn.execute(t.event_queue.delete().where(t.event_queue.c.dag_id == "silence"))
    with engine.connect() as conn:
        found = {e["held_by"]: e for e in held.held_events(conn, 10)}
        assert set(found) == {held.WINDOW, held.MISSING_FOR}
        window, absence = found[held.WINDOW], found[held.MISSING_FOR]
        assert (window["dag_id"], window["event_id"], window["asset"], window["key"]) == (
            "paired",
            left_event,
            "left",
            "p1",
        )
        assert (absence["dag_id"], absence["event_id"], absence["asset"], absence["key"]) == (
            "silence",
            beat_event,
            "beats",
            "s1",
        )
        # until: the window closes 60 s after the event, the silence makes a run 300 s after the last beat
        assert window["held_until"] > window["since"] and absence["held_until"] > absence["since"]
        assert [e["dag_id"] for e in held.held_events(conn, 10, "paired")] == ["paired"]
        assert held.held_counts(conn) == {("paired", held.WINDOW): 1, ("silence", held.MISSING_FOR): 1}
    # once a silence has made its run, its key holds nothing
    with engine.begin() as conn:
        assert store_windows.alert(conn, "silence", "s1", beat_event)
    with engine.connect() as conn:
        assert [e["held_by"] for e in held.held_events(conn, 10)] == [held.WINDOW]
