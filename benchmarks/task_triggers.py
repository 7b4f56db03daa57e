"""A deferred try on a trigger written for Airflow: how fast the triggerer's event resumes it.

    .venv/bin/python benchmarks/task_triggers.py --runs 50
    .venv/bin/python benchmarks/task_triggers.py --runs 50 --trigger time
    .venv/bin/python benchmarks/task_triggers.py --database-url postgresql://postgres@127.0.0.1/bench

`herald standalone` (2 workers) runs a DAG whose operator defers on its own
`BaseTrigger` that fires at once (`--trigger custom`), or, for comparison, on
`TimeDeltaTrigger(0)`, which the scheduler ends without a triggerer (`--trigger
time`). Runs are triggered one at a time. The latency is from the operator's
`execute` (it takes `time.time()` just before `self.defer(...)`) to the first
line of the method it resumes in, both appended to a file: the worker's result,
the scheduler's pass storing the wait, the triggerer's claim, build and run, the
stored event, the pass resuming the try, and a worker starting it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HERALD, herald, summary_ms, write_result

DAG = """
import time
from datetime import timedelta
from herald import DAG, BaseOperator, BaseTrigger, TimeDeltaTrigger, TriggerEvent

STAMPS = {stamps!r}


class AtOnce(BaseTrigger):
    def serialize(self):
        return ("bench_dag.AtOnce", {{}})

    async def run(self):
        yield TriggerEvent({{"fired": time.time()}})


class Defers(BaseOperator):
    def execute(self, context):
        trigger = AtOnce() if {custom!r} else TimeDeltaTrigger(timedelta(0))
        with open(STAMPS, "a") as f:
            f.write(f"{{context['run_id']}} defer {{time.time()}}\\n")
        self.defer(trigger=trigger, method_name="resumed")

    def resumed(self, context, event=None):
        now = time.time()  # the first line of the resumed method
        with open(STAMPS, "a") as f:
            f.write(f"{{context['run_id']}} resume {{now}}\\n")


with DAG(dag_id="bench_defer", schedule=None):
    Defers(task_id="defer")
"""


def stamps(path: Path) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    if not path.exists():
        return found
    for line in path.read_text().splitlines():
        run_id, what, at = line.split()
        found.setdefault(run_id, {})[what] = float(at)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--trigger", choices=["custom", "time"], default="custom")
    parser.add_argument("--database-url", default=None, help="default: SQLite in the Herald's home")
    args = parser.parse_args()

    with herald("task-triggers", args.database_url) as h:
        h.write_dag("bench_dag", DAG.format(stamps=str(h.stamps_path), custom=args.trigger == "custom"))
        h.start_standalone()
        latencies: list[float] = []
        for _ in range(args.runs):
            before = len(stamps(h.stamps_path))
            subprocess.run([HERALD, "dags", "trigger", "bench_defer"], env=h.env, capture_output=True, check=True)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                found = stamps(h.stamps_path)
                done = [s for s in found.values() if "resume" in s]
                if len(found) > before and len(done) == len(found):
                    break
                time.sleep(0.01)
            else:
                raise SystemExit(f"a run did not resume within 60 s:\n{h.logs()}")
        for s in stamps(h.stamps_path).values():
            latencies.append(s["resume"] - s["defer"])
    summary = summary_ms(latencies)
    print(f"defer -> resumed method ({args.trigger} trigger): {summary}")
    write_result(f"task_triggers_{args.trigger}", {"trigger": args.trigger, "resume_latency": summary})


if __name__ == "__main__":
    main()
