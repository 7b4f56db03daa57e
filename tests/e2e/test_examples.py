"""The example DAGs that `make demo` runs, driven end to end."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.e2e.conftest import Herald

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "dags"


def test_example_dags_iot_etl_and_inference(herald: Herald) -> None:
    herald.env["HERALD_DAGS_FOLDER"] = str(EXAMPLES)
    herald.start()
    assert herald.cli_json("dags", "errors") == []

    herald.publish(
        "sensor-readings", {"sensor": "boiler-1", "temperature": 97.5}, {"sensor": "freezer", "temperature": -18}
    )
    herald.wait_runs(2, "evaluate_sensor_reading")
    alert_runs = herald.wait_runs(1, "notify_on_call")
    assert herald.cli_json("runs", "show", alert_runs[0]["run_id"])["tasks"][0]["result"] == "boiler-1"

    rows = [{"sku": "A1", "qty": 3, "price": 2.5}, {"sku": "B2", "qty": 1, "price": 10}]
    herald.publish("data-ready", {"partner": "acme", "batch": 7, "rows": rows})
    etl = herald.wait_runs(1, "load_partner_delivery")[0]
    assert etl["state"] == "success"
    with sqlite3.connect(herald.home / "warehouse.db") as db:
        assert db.execute("SELECT sku, qty, total FROM sales ORDER BY line").fetchall() == [
            ("A1", 3, 7.5),
            ("B2", 1, 10.0),
        ]
    loaded = herald.cli_json("events", "list", "--asset", "warehouse.sales")
    assert loaded[0]["extra"]["payload"]["rows_loaded"] == 2

    herald.publish(
        "inference-requests",
        {"request_id": "r1", "text": "excellent quality, works perfectly"},
        {"request_id": "r2", "text": "broke after a day, awful"},
    )
    runs = herald.wait_runs(2, "sentiment_inference")
    labels = sorted(herald.cli_json("runs", "show", r["run_id"])["tasks"][1]["result"] for r in runs)
    assert labels == ["negative", "positive"]
    assert {r["state"] for r in herald.runs()} == {"success"}
