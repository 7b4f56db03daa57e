"""Draw latency against offered load: Herald's sustained-throughput levels, with Airflow's points.

    .venv/bin/python benchmarks/chart.py   # reads benchmarks/results/*.json, writes benchmarks/latency_vs_load.png

Herald: p50 and p99 at each offered rate of `throughput.py` (local://, SQLite).
Airflow 3.1 (SQS via moto, from `airflow_compare.py`): one point for messages
sent one at a time (about one every 1-2 s) and one for the drain of 1,000
messages (x = the rate it reached, y = the median latency of those messages);
Herald's own SQS points are drawn the same way.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, ROOT

OUT = ROOT / "benchmarks" / "latency_vs_load.png"


def load(name: str) -> dict | None:  # type: ignore[type-arg]
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    tput = load("throughput")
    if tput:
        levels = [lv for lv in tput["levels"] if lv["started"]]
        x = [lv["offered_per_s"] for lv in levels]
        ax.plot(x, [lv["p50_ms"] for lv in levels], "o-", color="tab:blue", label="Herald local:// p50")
        ax.plot(x, [lv["p99_ms"] for lv in levels], "s--", color="tab:blue", alpha=0.6, label="Herald local:// p99")
    cmp_ = load("airflow_compare")
    if cmp_:
        styles = {
            "herald": ("tab:blue", "Herald SQS (moto)"),
            "airflow_fastest": ("tab:red", "Airflow 3.1 SQS, fastest settings"),
            "airflow_defaults": ("tab:orange", "Airflow 3.1 SQS, defaults"),
        }
        for side, (color, label) in styles.items():
            r = cmp_["sides"].get(side, {})
            if "latency" not in r or not r["latency"]["n"]:
                continue
            pts = [(0.7, r["latency"]["p50_ms"])]
            d = r["drain"]
            if d.get("messages_per_s"):
                pts.append((d["messages_per_s"], d["drain_latency"]["p50_ms"]))
            marker = "D" if side == "herald" else "X"
            ax.plot(
                [p[0] for p in pts], [p[1] for p in pts], marker, color=color, markersize=9, linestyle=":", label=label
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (messages/s; SQS points: one at a time, then a drain of 1,000)")
    ax.set_ylabel("publish -> first task start (ms)")
    ax.set_title("Latency against load (2 cores, SQLite, standalone)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT)
    print(f"chart: {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
