"""The states of runs, task tries and watchers, and the moves allowed between them.

Every state Herald stores is one of these enums (they are `StrEnum`s, so the
database keeps the plain string and old rows read back unchanged). The allowed
moves are written once, here; the store modules that write states check them
with `check_run` / `check_try`, so a late or repeated result can never move a
finished try back to running, whichever process applies it.

What would violate this: a module writing `state="..."` with a literal, or a
transition that is not listed in `RUN_TRANSITIONS` / `TRY_TRANSITIONS`.
"""

from __future__ import annotations

from enum import StrEnum


class InvalidTransition(ValueError):
    """A state change that the state machine does not allow."""


class RunState(StrEnum):
    """The state of a DAG run."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    # Flow control (`herald.sdk.flow`): a run its rules skipped, or one a newer event of its
    # key cancelled (`on_new_event="cancel_running"`); `dag_run.held_by` says which rule.
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True for a state a run never leaves on its own."""
        return self in RUN_FINISHED


class TryEnd(StrEnum):
    """Why one try of a task ended, as its history keeps it (`task_try`).

    A try's state says where it is now; its end says what happened to it. A
    timed-out try is `failed` (or `up_for_retry`) like any other, a lost worker's
    try goes back to the queue, a cancelled run's tries end `skipped`; the end
    tells them apart.
    """

    SUCCESS = "success"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    LOST_WORKER = "lost_worker"
    UPSTREAM_FAILED = "upstream_failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class RunType(StrEnum):
    """Why a run exists (the prefix of its run id, as in Airflow)."""

    ASSET_TRIGGERED = "asset_triggered"
    SCHEDULED = "scheduled"
    MANUAL = "manual"
    REPLAY = "replay"
    BACKFILL = "backfill"


class TryState(StrEnum):
    """The state of a task instance (the current try of one task of one run).

    `none` waits for its upstream tasks; `scheduled` may run; `queued` was handed
    to an executor; `running` reached a worker. `skipped` and `upstream_failed`
    are decided by the trigger rules without running the task. `deferred` waits,
    without a worker, for what its task deferred on (an asset event, a time).
    """

    NONE = "none"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"
    UP_FOR_RETRY = "up_for_retry"
    UPSTREAM_FAILED = "upstream_failed"
    REMOVED = "removed"
    DEFERRED = "deferred"

    @property
    def finished(self) -> bool:
        """True for a state a try never leaves on its own (a retry asked by a user aside)."""
        return self in TRY_FINISHED


class WatcherState(StrEnum):
    """The health of a watcher, as the triggerer that holds it reports it, or `paused` by a user.

    `paused` is the one state a person sets (`herald watchers pause`, the API): no
    triggerer consumes a paused watcher, and none reports a health over it; only a
    resume (`WATCHER_RESUMED`) moves it out.
    """

    STARTING = "starting"
    RUNNING = "running"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    STOPPED = "stopped"
    PAUSED = "paused"


#: the state a resumed watcher starts from: a triggerer takes it and reports `running`
WATCHER_RESUMED = WatcherState.STARTING


class CallbackState(StrEnum):
    """The state of a DAG callback request (`on_success_callback`/`on_failure_callback` of one run end).

    `pending` waits for a runner; `running` was claimed by one (a claim older than
    its time limit is taken again: its runner died); `success` or `failed` is how
    the callbacks ended (failed: one raised, or they ran past the time limit).
    """

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


class AlertState(StrEnum):
    """One episode of an alert condition: `pending` (seen, not yet for long enough), `firing`, `resolved`."""

    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


RUN_FINISHED = frozenset({RunState.SUCCESS, RunState.FAILED, RunState.SKIPPED, RunState.CANCELLED})
TRY_FINISHED = frozenset(
    {TryState.SUCCESS, TryState.FAILED, TryState.SKIPPED, TryState.UPSTREAM_FAILED, TryState.REMOVED}
)
#: states a worker may report for a try it ran
TRY_RESULTS = frozenset({TryState.SUCCESS, TryState.FAILED, TryState.SKIPPED})

RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.QUEUED: frozenset({RunState.RUNNING, RunState.FAILED, RunState.SKIPPED, RunState.CANCELLED}),
    RunState.RUNNING: frozenset({RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED}),
    # A user's "retry" (API, CLI) puts a finished run back to running.
    RunState.SUCCESS: frozenset({RunState.RUNNING}),
    RunState.FAILED: frozenset({RunState.RUNNING, RunState.QUEUED}),  # QUEUED: it never started a task
    # flow control's decisions are final: the event that made the run is kept, replay it to run again
    RunState.SKIPPED: frozenset(),
    RunState.CANCELLED: frozenset(),
}

TRY_TRANSITIONS: dict[TryState, frozenset[TryState]] = {
    TryState.NONE: frozenset({TryState.SCHEDULED, TryState.SKIPPED, TryState.UPSTREAM_FAILED, TryState.REMOVED}),
    TryState.SCHEDULED: frozenset(
        {
            TryState.QUEUED,
            TryState.SKIPPED,
            TryState.REMOVED,
            TryState.UPSTREAM_FAILED,
            TryState.FAILED,  # a mapped task whose expansion is invalid fails without running
        }
    ),
    TryState.QUEUED: frozenset(
        {
            TryState.RUNNING,
            TryState.SUCCESS,  # a result may arrive before the started notice
            TryState.FAILED,
            TryState.SKIPPED,
            TryState.UP_FOR_RETRY,
            TryState.QUEUED,  # handed to the queue again (a lost worker, a restart)
        }
    ),
    TryState.RUNNING: frozenset(
        {TryState.SUCCESS, TryState.FAILED, TryState.SKIPPED, TryState.UP_FOR_RETRY, TryState.QUEUED}
    ),
    # SKIPPED: its run timed out (dagrun_timeout) before the retry, as Airflow skips unfinished tries.
    TryState.UP_FOR_RETRY: frozenset({TryState.QUEUED, TryState.FAILED, TryState.SKIPPED}),
    # A user's "clear" (retry a task or a run) starts a finished try again.
    TryState.SUCCESS: frozenset({TryState.NONE, TryState.SCHEDULED}),
    TryState.FAILED: frozenset({TryState.NONE, TryState.SCHEDULED}),
    TryState.SKIPPED: frozenset({TryState.NONE, TryState.SCHEDULED}),
    TryState.UPSTREAM_FAILED: frozenset({TryState.NONE, TryState.SCHEDULED}),
    TryState.REMOVED: frozenset(),
    # Deferral (issue 16): a worker reports DEFERRED; the scheduler ends the wait without one
    # (its event came: SUCCESS; its deadline passed: FAILED or UP_FOR_RETRY; its run timed out: SKIPPED).
    # QUEUED: an operator's trigger fired and it resumes in its `next_method`, under the same try number
    TryState.DEFERRED: frozenset(
        {TryState.SUCCESS, TryState.FAILED, TryState.UP_FOR_RETRY, TryState.SKIPPED, TryState.QUEUED}
    ),
}
# the moves into DEFERRED, kept beside its own entry: a queued or running try defers
TRY_TRANSITIONS[TryState.QUEUED] |= {TryState.DEFERRED}
TRY_TRANSITIONS[TryState.RUNNING] |= {TryState.DEFERRED}


def can_move_run(current: RunState | str, new: RunState | str) -> bool:
    """True when a run may go from `current` to `new`."""
    return RunState(new) in RUN_TRANSITIONS[RunState(current)]


def can_move_try(current: TryState | str, new: TryState | str) -> bool:
    """True when a try may go from `current` to `new`."""
    return TryState(new) in TRY_TRANSITIONS[TryState(current)]


def check_run(current: RunState | str, new: RunState | str) -> None:
    """Raise `InvalidTransition` unless a run may go from `current` to `new`."""
    if not can_move_run(current, new):
        raise InvalidTransition(f"a run cannot go from {current} to {new}")


def check_try(current: TryState | str, new: TryState | str) -> None:
    """Raise `InvalidTransition` unless a try may go from `current` to `new`."""
    if not can_move_try(current, new):
        raise InvalidTransition(f"a task try cannot go from {current} to {new}")


def sources(transitions: dict[TryState, frozenset[TryState]], new: TryState) -> frozenset[TryState]:
    """Every state from which `new` may be reached: the WHERE of a guarded UPDATE."""
    return frozenset(s for s, targets in transitions.items() if new in targets)
