"""`make demo`: Herald standalone on SQLite with the example DAGs and a stream of sample messages.

Starts `herald standalone`, then publishes sensor readings, partner deliveries and
inference requests to the embedded local:// queues, and prints what Herald did
every few seconds. Ctrl-C stops both; running it again resumes with the same
database (`$HERALD_HOME`, default `.herald`).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PORT = int(os.environ.get("HERALD_DEMO_PORT", "8321"))
TEXTS = [
    "great product works well",
    "terrible quality broke after a day",
    "love it, excellent value",
    "slow delivery and poor packaging",
    "really good and easy to use",
    "awful, would not buy again",
]


def main() -> int:
    os.environ.setdefault("HERALD_HOME", str(ROOT / ".herald"))
    os.environ.setdefault("HERALD_DAGS_FOLDER", str(ROOT / "examples" / "dags"))
    herald = str(Path(sys.executable).with_name("herald"))
    proc = subprocess.Popen([herald, "standalone", "--port", str(PORT)])
    try:
        if not wait_healthy(proc):
            print("Herald did not start; see the messages above.", file=sys.stderr)
            return 1
        print(f"\nSending sample messages. Watch with:  {herald} runs list   (Ctrl-C stops the demo)\n", flush=True)
        stream(proc)
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C must not abandon Herald half-way through its clean stop.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0


def wait_healthy(proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/api/v1/health", timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def stream(proc: subprocess.Popen[bytes]) -> None:
    from herald import publish
    from herald.config import Settings
    from herald.store import queries
    from herald.store.db import make_engine

    engine = make_engine(Settings().db_url, pool_size=0)
    batch = int(time.time())
    tick = 0
    while proc.poll() is None:
        tick += 1
        sensor = random.choice(["boiler-1", "boiler-2", "freezer-7"])
        publish("local://sensor-readings", {"sensor": sensor, "temperature": round(random.gauss(70, 12), 1)})
        if tick % 2 == 0:
            publish("local://inference-requests", {"request_id": f"req-{tick}", "text": random.choice(TEXTS)})
        if tick % 10 == 0:
            batch += 1
            rows = [
                {
                    "sku": f"SKU-{random.randint(1, 50)}",
                    "qty": random.randint(1, 9),
                    "price": round(random.uniform(1, 40), 2),
                }
                for _ in range(random.randint(2, 6))
            ]
            publish("local://data-ready", {"partner": "acme", "batch": batch, "rows": rows})
        if tick % 20 == 0:
            with engine.connect() as conn:
                runs = queries.list_runs(conn, 100000)
            states: dict[str, int] = {}
            for run in runs:
                states[run["state"]] = states.get(run["state"], 0) + 1
            summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
            print(f"[demo] runs so far: {summary}", flush=True)
        time.sleep(0.25)


if __name__ == "__main__":
    sys.exit(main())
