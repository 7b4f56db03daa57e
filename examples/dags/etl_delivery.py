"""ETL on data delivery: a partner says "data ready"; extract, transform and load it into SQLite.

Try it:
    herald publish local://data-ready \
        '{"partner": "acme", "batch": 1, "rows": [{"sku": "A1", "qty": 3, "price": 2.5}]}'
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

data_ready = Asset(
    "partner_data_ready", watchers=[AssetWatcher("data_ready_queue", MessageQueueTrigger("local://data-ready"))]
)
warehouse_sales = Asset("warehouse.sales")


def warehouse_path() -> Path:
    """The demo's warehouse: a SQLite file beside Herald's own database."""
    return Path(os.environ.get("HERALD_HOME", ".herald")) / "warehouse.db"


@dag(schedule=[data_ready], tags=["etl"])
def load_partner_delivery():
    """Extract the delivered rows, compute line totals, load them idempotently."""

    @task
    def extract(triggering_asset_events):
        notice = triggering_asset_events[data_ready][0].extra["payload"]
        print(f"partner {notice['partner']} delivered batch {notice['batch']} ({len(notice['rows'])} rows)")
        return notice

    @task
    def transform(notice):
        return [
            {
                "partner": notice["partner"],
                "batch": notice["batch"],
                "line": i,
                "sku": r["sku"],
                "qty": int(r["qty"]),
                "total": round(int(r["qty"]) * float(r["price"]), 2),
            }
            for i, r in enumerate(notice["rows"])
        ]

    @task(outlets=[warehouse_sales], retries=2, retry_delay=1)
    def load(rows, outlet_events):
        with sqlite3.connect(warehouse_path()) as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS sales (partner TEXT, batch INT, line INT, sku TEXT, qty INT,"
                " total REAL, PRIMARY KEY (partner, batch, line))"
            )
            # Keyed on (partner, batch, line): a retried load never doubles a row.
            db.executemany("INSERT OR REPLACE INTO sales VALUES (:partner, :batch, :line, :sku, :qty, :total)", rows)
            count = db.execute("SELECT count(*) FROM sales").fetchone()[0]
        outlet_events[warehouse_sales].extra = {"payload": {"rows_loaded": len(rows), "table_rows": count}}
        return len(rows)

    load(transform(extract()))


load_partner_delivery()
