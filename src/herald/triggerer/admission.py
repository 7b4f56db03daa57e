"""Admission: what a message must be to become an event, and user code kept off the event loop.

One message must never stop a watcher, nor the process. So, before the
delivery's transaction:

- a message's own identity and origin (dedupe key, key, headers, metadata),
  which Herald turns into text itself, is stored sanitised
  (`herald.store.storable.clean_text`: NUL and lone surrogates become U+FFFD);
- its payload must be storable and readable back (`storable.json_problem`:
  nested at most `HERALD_MAX_PAYLOAD_DEPTH` levels, finite numbers, valid
  Unicode), else the message becomes a dead letter with the reason;
- `apply_function` (user code) runs on a thread of its consumer, never on the
  event loop that serves the API, the scheduler and every other watcher, and
  each call has a time limit (`HERALD_APPLY_FUNCTION_TIMEOUT`): a message past
  it becomes a dead letter, and the consumer carries on with a fresh thread
  (the stuck one is abandoned: Python cannot stop a thread).

What would violate this: calling a trigger's `to_payload` on the event loop,
or storing a payload `json_problem` refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from herald.sdk.triggers import BaseEventTrigger, Message
from herald.store.db import refused_row
from herald.store.events import Outcome
from herald.store.storable import (
    DEFAULT_MAX_DEPTH,
    DEPTH_CEILING,
    clean_json,
    clean_text,
    displayable_object,
    fit_key,
    json_problem,
)
from herald.store.sync import WatcherSpec

log = logging.getLogger("herald.triggerer")

#: seconds an `apply_function` may take for one message (the setting's default)
DEFAULT_APPLY_TIMEOUT = 10.0


def clean_message(message: Message) -> Message:
    """The message with what Herald stores about it made storable (the same object when nothing changes).

    Text loses NUL and lone surrogates, a dedupe key longer than its column is
    shortened with a hash (`fit_key`), and metadata a trigger filled with values
    that are not JSON (bytes, NaN...) is shown as text.
    """
    key = clean_text(message.key) if isinstance(message.key, str) else message.key
    dedupe_key = fit_key(message.dedupe_key)
    clean = (
        key is message.key
        and dedupe_key is message.dedupe_key
        and json_problem(message.headers, DEPTH_CEILING, nul=True) is None
        and json_problem(message.metadata, DEPTH_CEILING, nul=True) is None
    )
    if clean:
        return message  # the common case: checked without a copy
    headers = clean_json(message.headers)
    metadata = displayable_object(clean_json(message.metadata))
    return dataclasses.replace(message, key=key, dedupe_key=dedupe_key, headers=headers, metadata=metadata)


def admit(
    trigger: BaseEventTrigger, message: Message, max_depth: int = DEFAULT_MAX_DEPTH
) -> tuple[bool, Any, str | None]:
    """`trigger.to_payload(message)`, and a payload that could not be stored refused.

    Raises:
        ValueError: the payload cannot be stored (the reason says why); the
            message becomes a dead letter. Whatever `to_payload` raises, too.
    """
    keep, payload, encoding = trigger.to_payload(message)
    if keep:
        problem = json_problem(payload, max_depth, "the payload")
        if problem is not None:
            raise ValueError(problem)
    return keep, payload, encoding


def judge(spec: WatcherSpec, message: Message, max_depth: int = DEFAULT_MAX_DEPTH) -> Outcome:
    """One watcher's verdict on one message: an event, a skip, or a dead letter with its reason."""
    try:
        keep, payload, encoding = admit(spec.watcher.trigger, message, max_depth)
    except Exception as exc:  # user code and bad input: the message's problem, never the watcher's
        return Outcome(spec.id, spec.asset_id, message, "dead", error=clean_text(f"{type(exc).__name__}: {exc}"))
    return Outcome(spec.id, spec.asset_id, message, "event" if keep else "skip", payload, encoding)


def admit_within(
    trigger: BaseEventTrigger, message: Message, max_depth: int, timeout: float
) -> tuple[bool, Any, str | None]:
    """`admit` on a thread of its own, waited for at most `timeout` seconds (blocking the caller).

    For rare calls made outside the event loop (replaying a dead letter).

    Raises:
        TimeoutError: the `apply_function` ran past `timeout` (its thread is abandoned).
    """
    found: list[tuple[bool, Any, str | None]] = []
    failed: list[BaseException] = []

    def call() -> None:
        try:
            found.append(admit(trigger, message, max_depth))
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=call, name="herald-apply replay", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"apply_function did not return within {timeout:g}s (HERALD_APPLY_FUNCTION_TIMEOUT)")
    if failed:
        raise failed[0]
    return found[0]


class _Job:
    """Verdicts to reach on a lane's thread, one pair at a time, watched by the event loop."""

    def __init__(self, pairs: Sequence[tuple[WatcherSpec, Message]], max_depth: int) -> None:
        self.pairs = pairs
        self.max_depth = max_depth
        self.lock = threading.Lock()
        self.done: list[Outcome] = []
        #: when the pair being judged (index `len(done)`) started, or None between pairs
        self.started: float | None = None
        self.abandoned = False
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.finished: asyncio.Future[None] = loop.create_future()

    def run(self) -> None:
        for spec, message in self.pairs:
            with self.lock:
                if self.abandoned:
                    return
                self.started = time.monotonic()
            try:
                outcome = judge(spec, message, self.max_depth)
            except BaseException as exc:  # SystemExit in user code: still the message's problem
                error = clean_text(f"{type(exc).__name__}: {exc}")
                outcome = Outcome(spec.id, spec.asset_id, message, "dead", error=error)
            with self.lock:
                if self.abandoned:
                    return
                self.done.append(outcome)
                self.started = None
        self.loop.call_soon_threadsafe(_resolve, self.finished)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Lane(threading.Thread):
    """A daemon thread that runs jobs in order; abandoned (left to end alone) when one hangs."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                job.run()
            except BaseException:
                log.exception("judging messages failed")
                job.loop.call_soon_threadsafe(_resolve, job.finished)


class Admission:
    """Judges a consumer's messages off the event loop, each `apply_function` call with a time limit.

    Args:
        name: names the consumer's thread (in thread dumps).
        max_depth: payloads nested deeper become dead letters.
        timeout: seconds one `apply_function` call may take.
    """

    def __init__(self, name: str, max_depth: int = DEFAULT_MAX_DEPTH, timeout: float = DEFAULT_APPLY_TIMEOUT) -> None:
        self.name = name
        self.max_depth = max_depth
        self.timeout = timeout
        self._lane: _Lane | None = None
        #: threads left running a call past its limit (they end when the call returns)
        self.abandoned = 0

    async def outcomes(self, watchers: Sequence[WatcherSpec], messages: Sequence[Message]) -> list[Outcome]:
        """Every watcher's verdict on every message, in message order."""
        pairs = [(spec, clean_message(message)) for message in messages for spec in watchers]
        if not any(spec.watcher.trigger.apply_function is not None for spec in watchers):
            # No user code: decoding and the filter are Herald's own, quick and bounded.
            return [judge(spec, message, self.max_depth) for spec, message in pairs]
        made: list[Outcome] = []
        while pairs:
            job = _Job(pairs, self.max_depth)
            self._lane_for().jobs.put(job)
            try:
                stuck = await self._watch(job)
            except BaseException:
                with job.lock:
                    job.abandoned = True  # cancelled: the lane stops after the current call
                raise
            made.extend(job.done)
            if stuck is None:
                break
            spec, message = pairs[len(job.done)]
            made.append(
                Outcome(
                    spec.id,
                    spec.asset_id,
                    message,
                    "dead",
                    error=f"TimeoutError: apply_function did not return within {self.timeout:g}s "
                    f"(HERALD_APPLY_FUNCTION_TIMEOUT); the message was not turned into an event",
                )
            )
            pairs = pairs[len(job.done) + 1 :]
        return made

    async def _watch(self, job: _Job) -> int | None:
        """Wait for `job`; returns the index of a pair past its time limit (its lane abandoned), or None."""
        while True:
            with job.lock:
                started = job.started
            wait = self.timeout if started is None else self.timeout - (time.monotonic() - started)
            try:
                await asyncio.wait_for(asyncio.shield(job.finished), max(0.0, wait))
                return None
            except TimeoutError:
                pass
            with job.lock:
                if job.finished.done() or job.started is None:
                    continue
                if time.monotonic() - job.started < self.timeout:
                    continue
                job.abandoned = True
                index = len(job.done)
            self._abandon()
            return index

    def _lane_for(self) -> _Lane:
        if self._lane is None or not self._lane.is_alive():
            self._lane = _Lane(f"herald-apply {self.name[:60]}")
            self._lane.start()
        return self._lane

    def _abandon(self) -> None:
        lane, self._lane = self._lane, None
        if lane is not None:
            lane.jobs.put(None)  # it ends once the hanging call returns, if ever
            self.abandoned += 1
            log.warning(
                "an apply_function of %s ran past %gs; its thread is abandoned (%d so far)",
                self.name[:80],
                self.timeout,
                self.abandoned,
            )

    def close(self) -> None:
        """Let the lane's thread end (after its current job)."""
        if self._lane is not None:
            self._lane.jobs.put(None)
            self._lane = None


def store_apart(
    store: Callable[[list[Outcome], list[Message]], int],
    made: Sequence[Outcome],
    messages: Sequence[Message],
    per_message: int,
) -> int:
    """Store a batch the database refused one message at a time; a refused message becomes a dead letter.

    `made` holds `per_message` outcomes per message, in message order (as
    `Admission.outcomes` returns them); `store(outcomes, messages)` commits one
    delivery. The dead letter of a refused message keeps its body and identity
    only (what it carried may be what was refused). Returns the events created.

    Raises:
        Exception: whatever the database raises that is not about one message
            (the consumer reconnects, the broker delivers the rest again).
    """
    created = 0
    for i, message in enumerate(messages):
        chunk = list(made[i * per_message : (i + 1) * per_message])
        try:
            created += store(chunk, [message])
        except Exception as exc:
            if not refused_row(exc):
                raise
            error = clean_text(f"the database refused the message: {type(exc).__name__}: {exc}")[:4000]
            log.warning("a message of %s was refused by the database: %s", message.metadata.get("broker"), error)
            bare = dataclasses.replace(
                message, key=None, headers={}, metadata={}, dedupe_key=fit_key(message.dedupe_key)
            )
            created += store([Outcome(o.watcher_id, o.asset_id, bare, "dead", error=error) for o in chunk], [message])
    return created
