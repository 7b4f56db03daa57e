"""What keeping each try's history costs the scheduler: `write_ends` of a batch with and without it.

    .venv/bin/python benchmarks/try_history.py --batch 500 --rounds 20 [--database-url postgresql://...]

A run with `--batch` running tries; each round ends them all in one `write_ends`
(one transaction), with the history (`reason` set: the UPDATE plus one INSERT ...
SELECT for the batch) or without (the UPDATE alone), alternating; the tries are
put back to running between rounds outside the timing. Prints the median time of
a batch each way and the cost per try.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert, update

from herald.store import tables as t
from herald.store import tries
from herald.store.db import make_engine
from herald.store.migrate import upgrade
from herald.store.states import RunState, RunType, TryEnd, TryState
from herald.store.types import utcnow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    engine = make_engine(url)
    upgrade(engine)
    now = utcnow()
    with engine.begin() as conn:
        run_pk = conn.execute(
            insert(t.dag_run)
            .values(
                run_id=f"bench_{now.timestamp()}",
                dag_id="bench",
                state=RunState.RUNNING,
                run_type=RunType.MANUAL,
                conf={},
                queued_at=now,
                started_at=now,
            )
            .returning(t.dag_run.c.id)
        ).scalar_one()
        conn.execute(
            insert(t.task_instance),
            [
                {
                    "run_pk": run_pk,
                    "dag_id": "bench",
                    "task_id": f"t{i}",
                    "state": TryState.RUNNING,
                    "try_number": 1,
                    "max_tries": 1,
                    "map_index": -1,
                    "started_at": now,
                    "hostname": "local:1",
                }
                for i in range(args.batch)
            ],
        )
        ids = list(conn.execute(t.task_instance.select().with_only_columns(t.task_instance.c.id)).scalars())
    timings: dict[bool, list[float]] = {True: [], False: []}
    for r in range(args.rounds * 2):
        kept = r % 2 == 0
        changes = [
            {
                "id": i,
                "state": TryState.SUCCESS,
                "ended_at": utcnow(),
                "error": None,
                "log": "",
                **({"reason": TryEnd.SUCCESS} if kept else {}),
            }
            for i in ids
        ]
        t0 = time.perf_counter()
        with engine.begin() as conn:
            tries.write_ends(conn, changes)
        timings[kept].append(time.perf_counter() - t0)
        with engine.begin() as conn:
            conn.execute(update(t.task_instance).values(state=TryState.RUNNING, ended_at=None))
    with_ms = statistics.median(timings[True]) * 1000
    without_ms = statistics.median(timings[False]) * 1000
    print(f"{engine.dialect.name}: batch of {args.batch} ended tries, median of {args.rounds} rounds each")
    print(f"  without history: {without_ms:.2f} ms")
    print(
        f"  with history:    {with_ms:.2f} ms (+{with_ms - without_ms:.2f} ms, "
        f"{(with_ms - without_ms) * 1000 / args.batch:.1f} us per try)"
    )


if __name__ == "__main__":
    main()
