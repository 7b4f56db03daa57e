"""How long `herald standalone` takes to start and to stop, and the CPU its start costs.

    .venv/bin/python benchmarks/startstop.py --runs 5 [--database-url postgresql://...]

Each run makes a fresh home with the example DAGs (`examples/dags`), starts
`herald standalone`, waits for `/api/v1/health`, lets it idle 2 s, reads the CPU
its whole process tree has used (the process, its fork server and workers),
then stops it with SIGINT (Ctrl-C) and times the stop. Medians are printed.
The suite starts Herald hundreds of times: this is what each start and stop costs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HERALD, free_port
from cpu_share import cpu_seconds, tree

ROOT = Path(__file__).resolve().parents[1]


def one(home: Path, url: str | None) -> tuple[float, float, float]:
    shutil.rmtree(home, ignore_errors=True)
    (home / "dags").mkdir(parents=True)
    for dag in (ROOT / "examples" / "dags").glob("*.py"):
        shutil.copy(dag, home / "dags")
    port = free_port()
    env = {**os.environ, "HERALD_HOME": str(home), "HERALD_DATABASE_URL": url or f"sqlite:///{home}/herald.db"}
    began = time.monotonic()
    with (home / "standalone.log").open("wb") as log:
        proc = subprocess.Popen([HERALD, "standalone", "--port", str(port)], env=env, stdout=log, stderr=log)
    while True:
        if proc.poll() is not None:
            raise SystemExit((home / "standalone.log").read_text())
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1):
                break
        except OSError:
            time.sleep(0.05)
    started = time.monotonic() - began
    time.sleep(2)
    cpu = sum(cpu_seconds(pid) for pid in tree(proc.pid))
    stopping = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait()
    return started, cpu, time.monotonic() - stopping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", default=None, help="PostgreSQL (emptied by the caller); default SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [one(Path(tmp) / "home", args.database_url) for _ in range(args.runs)]
    start, cpu, stop = (statistics.median(r[i] for r in results) for i in range(3))
    print(
        f"standalone, {args.runs} runs (medians): start {start:.2f} s, CPU at start {cpu:.2f} s, stop {stop:.2f} s; "
        f"load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
