"""The triggers deferred tries wait on: rebuilt from their classpath and kwargs, run, their first event stored.

An operator that calls `self.defer(trigger=MyTrigger(...), method_name=...)` with a
trigger written for Airflow leaves a trigger wait in the database
(`store.trigger_waits`). Every triggerer runs its share of them:

1. **Leases.** Each round (every `LEASE_RENEW` seconds, and at once when a
   scheduler stores a new one: `notify.TRIGGERS`) it renews the leases it holds,
   stops the triggers whose wait is gone (their try ended or deferred again), and
   takes free ones up to its share (the unfired waits divided by the live
   triggerers) and `capacity`. A dead triggerer's waits are free again one lease
   later and another takes them; a restarted standalone (same owner name) takes
   its own back at once. Their triggers then run again from the start.
2. **Build.** The class is found by its classpath: a module already imported (a
   DAG file, under its module name or its stem; a module beside it), else imported
   on a thread with a time limit. `cls(**kwargs)`; `task_instance` and
   `trigger_id` are set on it.
3. **Run.** `run()` until its first event; how it ended (`Fired`: the event, an
   end event, or the exception) is stored by `trigger_waits.fire` (guarded: the
   first to store wins), the scheduler woken, and `cleanup()` called.

User code is kept from the rest of the triggerer: the triggers run on an event
loop of their own, in a thread of their own, so a trigger that blocks its loop
(`time.sleep`, blocking I/O) delays only the other triggers, never the watchers'
consumers nor the lease rounds; a watchdog logs which trigger blocks it. A
trigger whose import, construction or `run()` raises, or whose import hangs
past the time limit, fails its own try only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from herald import notify
from herald.loader import DAG_MODULE_PREFIX, module_name
from herald.sdk.airflow_triggers import (
    TRIGGER_FAILURE,
    BaseTaskEndEvent,
    TriggerEvent,
    decode_value,
    encode_value,
    resolve_trigger_class,
)
from herald.sdk.dag import DAG
from herald.sdk.masking import mask_text
from herald.store import trigger_waits
from herald.store.db import Database
from herald.store.storable import DEPTH_CEILING, SizeLimits, clean_text, json_problem, size_problem
from herald.store.trigger_waits import Claimed, Fired
from herald.store.triggerers import LEASE_TTL
from herald.store.types import utcnow
from herald.triggerer import trigger_logs

log = logging.getLogger("herald.triggerer")

#: how often the leases are renewed and free triggers looked for (LEASE_TTL is how long a lease lasts)
LEASE_RENEW = 3.0
#: Airflow's default_capacity: the most triggers one triggerer runs
DEFAULT_CAPACITY = 1000
#: seconds a trigger's module may take to import
DEFAULT_IMPORT_TIMEOUT = 30.0
#: seconds `cleanup()` (and closing `run()`) may take
CLEANUP_TIMEOUT = 10.0
#: seconds a stop waits for the triggers to finish their cleanup
STOP_GRACE = 5.0
#: the triggers' loop beats this often; stalled past BLOCKED_AFTER, a trigger blocks it
BEAT_INTERVAL = 0.2
BLOCKED_AFTER = 2.0

__all__ = ["DEFAULT_CAPACITY", "TaskTriggers", "TriggerTaskInstance"]


@dataclass(frozen=True)
class TriggerTaskInstance:
    """What a trigger sees of the try it runs for (`self.task_instance`), as Airflow's triggerer sets it."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int


class _TriggerLoop:
    """The event loop the users' triggers run on, in a thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name="herald-triggers", daemon=True)
        self.last_beat = time.monotonic()

    def start(self) -> None:
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._beat)
        try:
            self.loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def _beat(self) -> None:
        self.last_beat = time.monotonic()
        self.loop.call_later(BEAT_INTERVAL, self._beat)

    def submit(self, coro: Coroutine[Any, Any, None]) -> concurrent.futures.Future[None]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stalled_for(self) -> float:
        """Seconds since the loop last ran its beat (about 0 while it is free)."""
        return max(0.0, time.monotonic() - self.last_beat - BEAT_INTERVAL)

    def stop(self, timeout: float) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout)


@dataclass
class _Running:
    """One trigger running for one deferral."""

    claim: Claimed
    future: concurrent.futures.Future[None] | None = None
    #: the built trigger (to name it when it blocks the loop)
    trigger: Any = None
    #: its outcome was handed over for storing: its lease is not taken back, it is not run again
    reported: bool = False
    outcome: Fired | None = field(default=None, repr=False)


class TaskTriggers:
    """Runs this triggerer's share of the triggers deferred tries wait on.

    Args:
        db: the metadata database.
        listener: wake-ups (`notify.TRIGGERS` when a try defers on a trigger).
        owner: this triggerer's name (its leases).
        live: the names of the live triggerers (the share is the waits divided by them).
        on_fired: called after a trigger's outcome is stored (wakes an in-process scheduler).
        capacity: the most triggers run here at once.
        limits: the size caps (an event's payload is capped as a return value is).
        import_timeout: seconds a trigger's module may take to import.
    """

    def __init__(
        self,
        db: Database,
        listener: notify.Listener,
        owner: str,
        live: Callable[[], Sequence[str]],
        on_fired: Callable[[], None],
        capacity: int = DEFAULT_CAPACITY,
        limits: SizeLimits | None = None,
        import_timeout: float = DEFAULT_IMPORT_TIMEOUT,
    ) -> None:
        self.db = db
        self.owner = owner
        self.live = live
        self.on_fired = on_fired
        self.capacity = capacity
        self.limits = limits or SizeLimits()
        self.import_timeout = import_timeout
        self._wake = listener.event(notify.TRIGGERS)
        #: the triggers running here, by try
        self.running: dict[int, _Running] = {}
        #: outcomes whose storing failed (the database was away): stored again each round
        self._pending: dict[int, _Running] = {}
        self._storing: set[asyncio.Task[None]] = set()
        #: dag_id -> the module name of its DAG file here (a classpath naming the worker's module name)
        self._dag_modules: dict[str, str] = {}
        self._loop: _TriggerLoop | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._main: asyncio.AbstractEventLoop | None = None
        self._blocked_since: float | None = None

    def update_dags(self, dags: Mapping[str, DAG]) -> None:
        """The DAGs of the latest load (their files' modules hold the triggers defined in DAG files)."""
        self._dag_modules = {dag_id: module_name(dag.fileloc) for dag_id, dag in dags.items() if dag.fileloc}

    async def run(self) -> None:
        """Lease rounds until cancelled (then `stop`)."""
        self._main = asyncio.get_running_loop()
        try:
            while True:
                self._wake.clear()
                try:
                    await self._round()
                except Exception as exc:
                    # keep running what it holds; the database is probably restarting
                    log.warning("could not renew the leases of deferred tries' triggers: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), LEASE_RENEW)
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()

    async def _round(self) -> None:
        """Renew, reconcile with the database, take a share of the free triggers, start them: one transaction."""
        await self._store_pending()
        db, owner, capacity = self.db, self.owner, self.capacity
        live = max(1, len(self.live()))
        # Not to start again: running here, or fired and being stored.
        busy = frozenset(self.running) | frozenset(self._pending)

        def lease_round() -> tuple[dict[int, str], list[Claimed]]:
            now = utcnow()
            if not busy:
                with db.engine.connect() as conn:
                    if not trigger_waits.any_waiting(conn):
                        return {}, []  # idle: one read, no write transaction
            with db.engine.begin() as conn:
                mine = trigger_waits.renew(conn, owner, now, LEASE_TTL)
                waiting = trigger_waits.waiting(conn)
                held, claimed = len(mine), []
                if held < capacity and waiting > held:  # idle (no wait, or all held here): no claim at all
                    share = math.ceil(waiting / live) - held
                    claimed = trigger_waits.claim(conn, owner, max(0, share), capacity - held, now, LEASE_TTL)
                # held here but not running: taken back after a restart under the same name
                start = [ti for ti in [*mine, *claimed] if ti not in busy]
                return mine, trigger_waits.load(conn, start) if start else []

        mine, loaded = await db.run(lease_round)
        for ti_id, entry in list(self.running.items()):
            if not entry.reported and mine.get(ti_id) != entry.claim.token:
                # its wait is gone (the try ended, deferred again, or timed out) or was taken over
                self._cancel(entry)
        for claim in loaded:
            self._start(claim)

    # -- running one trigger (its coroutine runs on the triggers' loop) -------------------------

    def _start(self, claim: Claimed) -> None:
        old = self.running.get(claim.ti_id)
        if old is not None:
            if old.claim.token == claim.token:
                return
            self._cancel(old)  # an earlier deferral of the same try
        if self._loop is None:
            # started with the first trigger: an installation without any costs no thread and no timer
            self._loop = _TriggerLoop()
            self._loop.start()
            self._watchdog = asyncio.create_task(self._watch_blocking(), name="trigger watchdog")
        assert self._main is not None
        entry = _Running(claim)
        self.running[claim.ti_id] = entry
        main = self._main

        def report(fired: Fired) -> None:  # called on the triggers' loop; stored from the main one
            main.call_soon_threadsafe(self._fired, entry, fired)

        entry.future = self._loop.submit(self._run(entry, report))
        entry.future.add_done_callback(lambda _: main.call_soon_threadsafe(self._finished, entry))
        log.info("running trigger %s for try %s of %s.%s", claim.classpath, claim.ti_id, claim.dag_id, claim.task_id)

    def _cancel(self, entry: _Running) -> None:
        if entry.future is not None:
            entry.future.cancel()
        if self.running.get(entry.claim.ti_id) is entry:
            del self.running[entry.claim.ti_id]

    def _finished(self, entry: _Running) -> None:
        """A trigger's coroutine is over: forget it unless its outcome is being stored."""
        if not entry.reported and self.running.get(entry.claim.ti_id) is entry:
            del self.running[entry.claim.ti_id]

    async def _run(self, entry: _Running, report: Callable[[Fired], None]) -> None:
        """Build the trigger, run it to its first event, report how it ended, clean up (on the triggers' loop)."""
        claim = entry.claim
        with trigger_logs.capturing(self.limits.log) as captured:

            def told(fired: Fired) -> None:  # the outcome, with what the trigger logged (secrets in URLs masked)
                report(replace(fired, log=clean_text(mask_text(captured.getvalue()))))

            try:
                trigger = await self._build(claim)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # the user's module or constructor: this try fails, nothing else
                told(_failure(claim, exc, "could not be built"))
                return
            entry.trigger = trigger
            with contextlib.suppress(Exception):
                trigger_logs.watch_logger(trigger.log)
            events: Any = None
            try:
                try:
                    events = trigger.run()
                    fired: Fired | None = None
                    async for event in events:
                        fired = self._outcome(claim, event)
                        break
                    told(fired or _ended_without_event(claim))
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:  # what run() raises fails this try alone (its retries apply)
                    told(_failure(claim, exc, "raised"))
            finally:
                await _clean_up(trigger, events)

    async def _build(self, claim: Claimed) -> Any:
        """`cls(**kwargs)` of the claim's classpath, told which try it runs for."""
        cls = await self._resolve(claim)
        trigger = cls(**decode_value(claim.kwargs))
        with contextlib.suppress(Exception):
            trigger.task_instance = TriggerTaskInstance(
                claim.dag_id, claim.task_id, claim.run_id, claim.map_index, claim.try_number
            )
            trigger.trigger_id = claim.ti_id
        return trigger

    async def _resolve(self, claim: Claimed) -> type:
        """The trigger's class: from a loaded module at once, else imported off this loop with a time limit."""
        module, _, name = claim.classpath.rpartition(".")
        loaded = sys.modules.get(module)
        if loaded is None and module.startswith(DAG_MODULE_PREFIX):
            # the worker named the class by its DAG file's module; this process may know the file by another path
            loaded = sys.modules.get(self._dag_modules.get(claim.dag_id, ""))
        found = getattr(loaded, name, None) if loaded is not None else None
        if isinstance(found, type):
            return found
        try:
            return await asyncio.wait_for(_on_a_thread(resolve_trigger_class, claim.classpath), self.import_timeout)
        except TimeoutError:
            raise ImportError(
                f"importing {claim.classpath} took longer than {self.import_timeout:g}s (a module that hangs when "
                f"imported?)"
            ) from None

    def _outcome(self, claim: Claimed, event: Any) -> Fired:
        """The first event as it is stored: its payload (JSON, within the size cap), or why it cannot be."""
        if isinstance(event, BaseTaskEndEvent):
            xcoms = encode_value(dict(event.xcoms or {}))
            problem = _storable(xcoms, self.limits.result, f"the XComs of {type(event).__name__}")
            if problem is not None:
                return Fired("error", error=f"{TRIGGER_FAILURE}: {claim.classpath}: {problem}")
            return Fired("end", state=event.task_instance_state, xcoms=xcoms)
        if not isinstance(event, TriggerEvent):
            wrong = f"{claim.classpath}.run() must yield TriggerEvent(payload), got {event!r}"
            return Fired("error", error=f"{TRIGGER_FAILURE}: {wrong}"[:2000])
        payload = encode_value(event.payload)
        problem = _storable(payload, self.limits.result, "the TriggerEvent's payload")
        if problem is not None:
            return Fired("error", error=f"{TRIGGER_FAILURE}: {claim.classpath}: {problem}")
        return Fired("event", event=payload)

    # -- storing outcomes (on the main loop) ----------------------------------------------------

    def _fired(self, entry: _Running, fired: Fired) -> None:
        entry.reported = True
        entry.outcome = fired
        task = asyncio.create_task(self._store(entry), name=f"trigger {entry.claim.ti_id} fired")
        self._storing.add(task)
        task.add_done_callback(self._storing.discard)

    async def _store(self, entry: _Running) -> None:
        claim, fired = entry.claim, entry.outcome
        assert fired is not None
        db = self.db

        def write() -> tuple[bool, bool]:
            with db.engine.begin() as conn:
                stored = trigger_waits.fire(conn, claim.ti_id, claim.token, fired, utcnow())
                return stored, stored and notify.notify_in(conn, notify.SCHEDULER)

        try:
            stored, notified = await db.run(write)
        except Exception as exc:
            log.warning("storing the outcome of trigger %s (try %s) failed: %s", claim.classpath, claim.ti_id, exc)
            self._pending[claim.ti_id] = entry
            return
        self._pending.pop(claim.ti_id, None)
        if self.running.get(claim.ti_id) is entry:
            del self.running[claim.ti_id]
        if not stored:
            log.info("trigger %s of try %s: its wait had ended already", claim.classpath, claim.ti_id)
            return
        if fired.kind == "error":
            log.warning("trigger %s of try %s failed: %s", claim.classpath, claim.ti_id, fired.error)
        else:
            log.info("trigger %s of try %s fired", claim.classpath, claim.ti_id)
        if not notified:
            notify.notify(db.url, notify.SCHEDULER)  # SQLite: schedulers in other processes
        self.on_fired()

    async def _store_pending(self) -> None:
        for entry in list(self._pending.values()):
            await self._store(entry)

    # -- a trigger that blocks its loop ---------------------------------------------------------

    async def _watch_blocking(self) -> None:
        """Log, once per episode, the trigger that keeps the triggers' loop from running."""
        while True:
            await asyncio.sleep(BLOCKED_AFTER / 2)
            loop = self._loop
            stalled = loop.stalled_for() if loop is not None else 0.0
            if stalled < BLOCKED_AFTER:
                self._blocked_since = None
                continue
            if self._blocked_since is not None:
                continue
            self._blocked_since = time.monotonic()
            assert loop is not None
            log.warning(
                "the deferred tries' triggers have been blocked for %.1fs by %s: a trigger must await, never "
                "block (time.sleep, blocking I/O); the other triggers wait meanwhile (the watchers do not)",
                stalled,
                self._culprit(loop),
            )

    def _culprit(self, loop: _TriggerLoop) -> str:
        """The trigger running on the triggers' thread now (or where that thread is)."""
        frame = sys._current_frames().get(loop.thread.ident or -1)
        triggers = {id(e.trigger): e for e in self.running.values() if e.trigger is not None}
        innermost = frame
        while frame is not None:
            entry = triggers.get(id(frame.f_locals.get("self")))
            if entry is not None:
                c = entry.claim
                return f"trigger {c.classpath} of try {c.ti_id} ({c.dag_id}.{c.task_id}, run {c.run_id})"
            frame = frame.f_back
        if innermost is None:
            return "an unknown trigger"
        return f"code at {innermost.f_code.co_filename}:{innermost.f_lineno}"

    # -- stopping ------------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop every trigger (their cleanup runs), store what fired meanwhile, give the leases up."""
        futures = [e.future for e in self.running.values() if e.future is not None]
        for future in futures:
            future.cancel()
        if futures:
            await asyncio.wait([asyncio.wrap_future(f) for f in futures], timeout=STOP_GRACE)
        if self._storing:
            await asyncio.wait(set(self._storing), timeout=STOP_GRACE)
        with contextlib.suppress(Exception):
            await self._store_pending()
        self.running.clear()
        db, owner = self.db, self.owner

        def release() -> None:
            with db.engine.begin() as conn:
                trigger_waits.release(conn, owner, utcnow())

        with contextlib.suppress(Exception):
            await db.run(release)  # another triggerer runs them at its next round
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._loop is not None:
            loop, self._loop = self._loop, None
            await asyncio.to_thread(loop.stop, STOP_GRACE)


def _on_a_thread(fn: Callable[[str], type], arg: str) -> asyncio.Future[type]:
    """`fn(arg)` on a daemon thread of its own: an import that hangs is abandoned, and never holds up an exit
    (a thread of the loop's default pool would be joined when the process exits)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[type] = loop.create_future()

    def settle(value: type | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            assert value is not None
            done.set_result(value)

    def call() -> None:
        try:
            value, error = fn(arg), None
        except BaseException as exc:  # handed to the awaiting trigger, which fails its try
            value, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (a stop)
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=call, name="herald-trigger-import", daemon=True).start()
    return done


def _failure(claim: Claimed, exc: BaseException, how: str) -> Fired:
    """The outcome of a trigger that raised (or could not be built): its try fails with the exception."""
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return Fired(
        "error",
        error=mask_text(f"{TRIGGER_FAILURE}: {claim.classpath} {how}: {what}")[:4000],
        traceback=[mask_text(line) for line in lines][-50:],
    )


def _ended_without_event(claim: Claimed) -> Fired:
    return Fired("error", error=f"{TRIGGER_FAILURE}: {claim.classpath}.run() ended without yielding an event")


def _storable(value: Any, limit: int, what: str) -> str | None:
    """Why `value` cannot be stored as JSON within `limit` bytes, or None."""
    return json_problem(value, DEPTH_CEILING, what) or size_problem(value, limit, what)


async def _clean_up(trigger: Any, events: Any) -> None:
    """Close `run()`'s generator and call `cleanup()`, each with a time limit; their errors are only logged."""
    close = getattr(events, "aclose", None)
    if callable(close):
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(close(), CLEANUP_TIMEOUT)
    cleanup = getattr(trigger, "cleanup", None)
    if callable(cleanup):
        try:
            await asyncio.wait_for(cleanup(), CLEANUP_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            log.warning("cleanup() of trigger %s failed: %s", type(trigger).__name__, exc)
