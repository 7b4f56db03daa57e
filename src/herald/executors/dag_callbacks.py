"""Runs DAG callback requests (`on_success_callback`, `on_failure_callback`) in child processes.

User code never runs in a scheduler process: each request is run by a child
process of its own (`dag_callback_child`), in a process group of its own,
killed past `HERALD_DAG_CALLBACK_TIMEOUT`. A callback that raises, hangs or
kills its process is recorded as a failed callback with its traceback (`herald
runs show`), and logged; the run's state and every other DAG are untouched.

Delivery: the request is inserted in the transaction that ends the run (exactly
one per run end). A runner claims it with a guarded UPDATE, so one runner of
all the schedulers runs it. A runner that dies while running it leaves a claim
that is taken again once it is older than a batch's time limits and a margin:
the callback then runs again (at least once across a crash; exactly once
otherwise). A child runs the requests of one DAG file, importing the file once;
each request is held to the time limit on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from herald import notify
from herald.dagcheck import describe_end
from herald.sdk.dag import DAG
from herald.store import aliases as store_aliases
from herald.store import callbacks as store_callbacks
from herald.store import tries as store_tries
from herald.store.db import Database
from herald.store.states import CallbackState, TryState
from herald.store.storable import DEFAULT_MAX_LOG
from herald.store.types import utcnow

log = logging.getLogger("herald.callbacks")

#: seconds from the last wake-up to the first look at the database without one (`notify.Recheck`)
POLL = 2.0
#: children (one per DAG file) run at once by one runner
CONCURRENCY = 2
#: requests claimed at once (one child runs those of one DAG file one after the other)
BATCH = 10
#: the longest report line a child writes (a request's log is capped below this)
REPORT_LINE_LIMIT = 64 * 1024 * 1024
#: a claim this much older than the time limit is presumed dead
STALE_MARGIN = 30.0


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _chosen_try(rows: list[Any], failure: bool) -> Any | None:
    """The task instance the context is built from: for a failure the try that failed last
    (else one upstream_failed), otherwise the last task by id (Airflow's `get_last_ti`)."""
    rows = [r for r in rows if r.state != TryState.REMOVED]
    if failure:
        failed = [r for r in rows if r.state == TryState.FAILED]
        if failed:
            return max(failed, key=lambda r: (r.ended_at is not None, r.ended_at or 0, r.task_id))
        upstream = [r for r in rows if r.state == TryState.UPSTREAM_FAILED]
        if upstream:
            return upstream[0]
    return max(rows, key=lambda r: (r.task_id, r.map_index)) if rows else None


class DagCallbackRunner:
    """Claims DAG callback requests and runs each in a child process with a time limit.

    Args:
        db: the metadata database.
        dags: the DAGs of the latest load (which file defines each DAG).
        dags_folder: the DAGs folder (put on the child's `sys.path`, as for tasks).
        owner: this process's name, recorded with each claim.
        timeout: seconds a request's callbacks may take together.
        log_limit: the log of a request keeps its last this many bytes.
    """

    def __init__(
        self,
        db: Database,
        dags: Callable[[], Mapping[str, DAG]],
        dags_folder: str,
        owner: str,
        timeout: float = 60.0,
        log_limit: int = DEFAULT_MAX_LOG,
    ) -> None:
        self.db = db
        self._dags = dags
        self.dags_folder = dags_folder
        self.owner = owner
        self.timeout = timeout
        self.log_limit = log_limit
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """Look for requests now (a scheduler pass made some)."""
        self._wake.set()

    def stop(self) -> None:
        """End the loop once the running requests are done."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Claim and run requests until `stop`."""
        # Its scheduler wakes it after every pass that asked for callbacks: the look
        # without a wake-up is a safety net, rarer the longer nothing comes.
        recheck = notify.Recheck(POLL)
        while not self._stopping:
            self._wake.clear()
            try:
                claimed = await self.db.run(self._claim)
            except Exception:
                log.exception("claiming DAG callback requests failed; retrying")
                claimed = []
            if claimed:
                recheck.reset()
                await self._run_batch(claimed)
                continue
            if await notify.wait_for_wake_up(self._wake, recheck.wait):
                recheck.reset()
            else:
                recheck.found_nothing()

    async def _run_batch(self, items: list[dict[str, Any]]) -> None:
        """The claimed requests, one child per DAG file, `CONCURRENCY` children at once."""
        by_file: dict[str, list[dict[str, Any]]] = defaultdict(list)
        dags = self._dags()
        for item in items:
            dag = dags.get(item["dag_id"])
            if dag is None or not dag.fileloc:
                error = f"DAG {item['dag_id']!r} is not loaded (removed, or an import error)"
                await self._finish(item, CallbackState.FAILED, "", error)
            else:
                by_file[dag.fileloc].append(item)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one_file(fileloc: str, group: list[dict[str, Any]]) -> None:
            async with gate:
                await self._run_file(fileloc, group)

        await asyncio.gather(*(one_file(f, g) for f, g in by_file.items()))

    async def _run_file(self, fileloc: str, items: list[dict[str, Any]]) -> None:
        outcomes, unstarted = await self._in_child(fileloc, items)
        for item in items:
            if item["id"] in outcomes:
                await self._finish(item, *outcomes[item["id"]])
        if unstarted:
            try:
                await self.db.run(self._release, unstarted)
            except Exception:
                log.exception("giving back DAG callback requests %s failed", unstarted)

    async def _finish(self, item: dict[str, Any], state: CallbackState, text: str, error: str | None) -> None:
        if error is not None:
            log.warning("%s of DAG %s (run %s) failed: %s", item["kind"], item["dag_id"], item["run"]["run_id"], error)
        try:
            await self.db.run(self._record, item["id"], state, text, error)
        except Exception:
            log.exception("recording the outcome of DAG callback request %s failed", item["id"])

    def _release(self, ids: list[int]) -> None:
        with self.db.engine.begin() as conn:
            store_callbacks.release(conn, ids, self.owner)

    def _claim(self) -> list[dict[str, Any]]:
        """Claim a few requests and gather what each child needs, in one transaction."""
        with self.db.engine.begin() as conn:
            rows = store_callbacks.claim(conn, self.owner, utcnow(), BATCH, self.timeout * BATCH + STALE_MARGIN)
            if not rows:
                return []
            pks = {int(r.run_pk) for r in rows}
            tries = store_tries.of_runs_detail(conn, pks)
            events = store_aliases.events_of_runs(conn, pks)
            xcoms: dict[int, dict[str, dict[str, Any]]] = {}
            for s in store_tries.successes(conn, pks):
                if int(s.map_index) < 0:  # a mapped task's values are left out of a callback's context
                    xcoms.setdefault(int(s.run_pk), {})[s.task_id] = {"return_value": s.result, **(s.xcom or {})}
        items = []
        for r in rows:
            run_pk = int(r.run_pk)
            chosen = _chosen_try([t for t in tries if int(t.run_pk) == run_pk], r.kind == "on_failure_callback")
            items.append(
                {
                    "id": int(r.id),
                    "dag_id": r.dag_id,
                    "kind": r.kind,
                    "reason": r.reason,
                    "run": {
                        "run_id": r.run_id,
                        "dag_id": r.dag_id,
                        "run_type": r.run_type,
                        "conf": r.conf or {},
                        "state": r.run_state,
                        "start_date": _iso(r.started_at),
                        "end_date": _iso(r.ended_at),
                        "logical_date": _iso(r.logical_date),
                        "data_interval_start": _iso(r.data_interval_start),
                        "data_interval_end": _iso(r.data_interval_end),
                    },
                    "ti": (
                        {
                            "task_id": chosen.task_id,
                            "map_index": int(chosen.map_index),
                            "try_number": max(1, int(chosen.try_number)),
                            "state": str(chosen.state),
                        }
                        if chosen is not None
                        else None
                    ),
                    "events": events.get(run_pk, []),
                    "xcom": xcoms.get(run_pk, {}),
                    "log_limit": self.log_limit,
                }
            )
        return items

    def _record(self, callback_id: int, state: CallbackState, text: str, error: str | None) -> None:
        with self.db.engine.begin() as conn:
            store_callbacks.record(conn, callback_id, self.owner, state, text, error, utcnow())

    async def _in_child(
        self, fileloc: str, items: list[dict[str, Any]]
    ) -> tuple[dict[int, tuple[CallbackState, str, str | None]], list[int]]:
        """Run one DAG file's requests in a child process.

        Returns the outcome of each request that ended (state, log, error), and the
        requests that never started because the child died or was killed before them
        (given back, for a later child).
        """
        loop = asyncio.get_running_loop()
        outcomes: dict[int, tuple[CallbackState, str, str | None]] = {}
        with tempfile.TemporaryDirectory(prefix="herald-callback-") as tmp:
            batch_file = Path(tmp, "batch.json")
            batch = {"fileloc": fileloc, "folder": self.dags_folder, "log_limit": self.log_limit, "requests": items}
            batch_file.write_text(json.dumps(batch, default=str))
            here = str(Path(__file__).resolve().parent.parent.parent)
            bootstrap = (
                f"import sys; sys.path.append({here!r}); "
                "from herald.executors.dag_callback_child import child_main; child_main(sys.argv[1:3])"
            )
            read_fd, write_fd = os.pipe()
            try:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-c",
                    bootstrap,
                    str(batch_file),
                    str(write_fd),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                    pass_fds=(write_fd,),
                    # its own process group: a timeout ends whatever the callback started too
                    start_new_session=True,
                )
            finally:
                os.close(write_fd)
            reader = asyncio.StreamReader(limit=REPORT_LINE_LIMIT)
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0)
            )
            stuck: str | None = None
            try:
                deadline = loop.time() + self.timeout
                while len(outcomes) < len(items):
                    try:
                        line = await asyncio.wait_for(reader.readline(), max(0.0, deadline - loop.time()))
                    except TimeoutError:
                        stuck = f"the callbacks took longer than {self.timeout:g} s and were killed"
                        break
                    if not line:
                        code = await proc.wait()
                        stuck = f"the callback process {describe_end(code)} before it reported"
                        break
                    message = json.loads(line)
                    if "done" in message:
                        errors = [str(e) for e in message.get("errors", [])]
                        state = CallbackState.FAILED if errors else CallbackState.SUCCESS
                        outcomes[int(message["done"])] = (state, str(message.get("log", "")), "\n".join(errors) or None)
                        deadline = loop.time() + self.timeout
            finally:
                transport.close()
                if proc.returncode is None:  # killed past its limit, or Herald is stopping
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    with contextlib.suppress(BaseException):
                        await asyncio.shield(proc.wait())
        left = [int(item["id"]) for item in items if int(item["id"]) not in outcomes]
        if stuck is not None and left:
            # the request that was running (or the first, if the file never got to one) fails; the rest wait
            outcomes[left[0]] = (CallbackState.FAILED, "", stuck)
            left = left[1:]
        return outcomes, left
