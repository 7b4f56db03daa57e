"""Prometheus metrics at /metrics, read from the metadata database at each scrape.

Every process writes its counters to the database already (watcher counters,
run states, timestamps), so the API reports them without any process-local
state: several API servers give the same answer, and a restart loses nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from herald.store import held as store_held
from herald.store import queries
from herald.store.states import WatcherState
from herald.store.types import utcnow

#: latency buckets in seconds: Herald aims at milliseconds, a scheduler loop at seconds
BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: the latency histograms cover this many newest event-triggered runs
LATENCY_WINDOW = 10000

WATCHER_COUNTERS = {
    "received": "Messages received",
    "events": "Messages that became new events",
    "deduped": "Messages turned away as duplicates by their dedupe key",
    "skipped": "Messages skipped by apply_function or the filter",
    "dead_lettered": "Messages kept as dead letters",
}


def _histogram(name: str, doc: str, values: list[float]) -> HistogramMetricFamily:
    counts = []
    for bound in BUCKETS:
        counts.append((repr(bound), float(sum(1 for v in values if v <= bound))))
    counts.append(("+Inf", float(len(values))))
    return HistogramMetricFamily(name, doc, buckets=counts, sum_value=sum(values))


class DatabaseCollector(Collector):
    """Reads every metric from the database when Prometheus scrapes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        now = utcnow()
        with self.engine.connect() as conn:
            watchers = queries.list_watchers(conn, 100000)
            runs = queries.run_states(conn)
            held = queries.held_runs(conn)
            held_events = store_held.held_counts(conn)
            backlog = queries.queue_backlog(conn, now)
            dead = queries.dead_letter_counts(conn)
            latencies = queries.recent_latencies(conn, LATENCY_WINDOW)
        labels = ["asset", "watcher"]
        for key, doc in WATCHER_COUNTERS.items():
            family = CounterMetricFamily(f"herald_watcher_{key}", f"{doc}, per watcher.", labels=labels)
            for w in watchers:
                family.add_metric([w["asset"], w["name"]], float(w[key] or 0))
            yield family
        up = GaugeMetricFamily("herald_watcher_up", "1 when the watcher is consuming.", labels=[*labels, "state"])
        lag = GaugeMetricFamily("herald_watcher_lag", "Messages waiting in the broker, where it tells.", labels=labels)
        for w in watchers:
            up.add_metric([w["asset"], w["name"], w["state"]], 1.0 if w["state"] == WatcherState.RUNNING else 0.0)
            if w["lag"] is not None:
                lag.add_metric([w["asset"], w["name"]], float(w["lag"]))
        yield up
        yield lag
        by_state = GaugeMetricFamily("herald_dag_runs", "Runs by DAG and state.", labels=["dag_id", "state"])
        for r in runs:
            by_state.add_metric([r["dag_id"], r["state"]], float(r["count"]))
        yield by_state
        flow = GaugeMetricFamily(
            "herald_dag_runs_held",
            "Runs a flow-control rule holds queued, skipped or cancelled, by DAG, state and rule.",
            labels=["dag_id", "state", "held_by"],
        )
        for r in held:
            flow.add_metric([r["dag_id"], r["state"], r["held_by"]], float(r["count"]))
        yield flow
        waiting = GaugeMetricFamily(
            "herald_events_held",
            "Events no run yet because a window or an absence watch holds them, or never because a "
            "cancel_on event cancelled them while they waited (held_by cancelled), by DAG and rule.",
            labels=["dag_id", "held_by"],
        )
        for (dag_id, rule), count in sorted(held_events.items()):
            waiting.add_metric([dag_id, rule], float(count))
        yield waiting
        queued = GaugeMetricFamily(
            "herald_event_queue_events", "Events waiting to become runs (queue lag), per DAG.", labels=["dag_id"]
        )
        age = GaugeMetricFamily(
            "herald_event_queue_oldest_seconds",
            "Age of the oldest event waiting for a run, per DAG.",
            labels=["dag_id"],
        )
        for b in backlog:
            queued.add_metric([b["dag_id"]], float(b["events"]))
            age.add_metric([b["dag_id"]], b["oldest_age_seconds"])
        yield queued
        yield age
        dl = GaugeMetricFamily("herald_dead_letters", "Dead letters stored, by replay status.", labels=["status"])
        dl.add_metric(["stored"], float(dead["total"]))
        dl.add_metric(["replayed"], float(dead["replayed"]))
        dl.add_metric(["replay_requested"], float(dead["requested"]))
        yield dl
        yield _histogram(
            "herald_event_to_run_seconds",
            f"From an event's timestamp to its run being queued (newest {LATENCY_WINDOW} event-triggered runs).",
            [x[0] for x in latencies],
        )
        yield _histogram(
            "herald_event_to_task_start_seconds",
            f"From an event's timestamp to the first task of its run starting (newest {LATENCY_WINDOW} runs).",
            [x[1] for x in latencies if x[1] is not None],
        )


def render(engine: Engine) -> bytes:
    """The metrics in Prometheus' text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(engine))
    return generate_latest(registry)
