"""The allowed moves of runs and tries."""

from __future__ import annotations

import pytest

from herald.store.states import (
    TRY_TRANSITIONS,
    InvalidTransition,
    RunState,
    TryState,
    check_run,
    check_try,
    sources,
)


def test_a_finished_try_never_goes_back_to_running() -> None:
    for finished in (TryState.SUCCESS, TryState.FAILED, TryState.SKIPPED, TryState.UPSTREAM_FAILED):
        with pytest.raises(InvalidTransition):
            check_try(finished, TryState.RUNNING)


def test_a_result_applies_to_a_queued_or_running_try() -> None:
    assert sources(TRY_TRANSITIONS, TryState.SUCCESS) == {TryState.QUEUED, TryState.RUNNING, TryState.DEFERRED}
    assert TryState.UP_FOR_RETRY in sources(TRY_TRANSITIONS, TryState.FAILED)


def test_trigger_rules_decide_only_waiting_tries() -> None:
    assert sources(TRY_TRANSITIONS, TryState.UPSTREAM_FAILED) == {TryState.NONE, TryState.SCHEDULED}
    assert {TryState.NONE, TryState.SCHEDULED, TryState.QUEUED, TryState.RUNNING} <= sources(
        TRY_TRANSITIONS, TryState.SKIPPED
    )


def test_run_moves() -> None:
    check_run(RunState.QUEUED, RunState.RUNNING)
    check_run(RunState.RUNNING, RunState.SUCCESS)
    with pytest.raises(InvalidTransition):
        check_run(RunState.QUEUED, RunState.SUCCESS)


def test_every_state_has_its_moves_written_down() -> None:
    from herald.store.states import RUN_TRANSITIONS

    assert set(TRY_TRANSITIONS) == set(TryState)
    assert set(RUN_TRANSITIONS) == set(RunState)
    for targets in TRY_TRANSITIONS.values():
        assert targets <= set(TryState)


def test_finished_states_are_the_ones_nothing_moves_on_its_own() -> None:
    assert {s for s in TryState if s.finished} == {
        TryState.SUCCESS,
        TryState.FAILED,
        TryState.SKIPPED,
        TryState.UPSTREAM_FAILED,
        TryState.REMOVED,
    }
    assert {s for s in RunState if s.finished} == {
        RunState.SUCCESS,
        RunState.FAILED,
        RunState.SKIPPED,
        RunState.CANCELLED,
    }


def test_flow_control_skips_queued_runs_and_cancels_queued_or_running_ones_for_good() -> None:
    check_run(RunState.QUEUED, RunState.SKIPPED)
    check_run(RunState.QUEUED, RunState.CANCELLED)
    check_run(RunState.RUNNING, RunState.CANCELLED)
    with pytest.raises(InvalidTransition):
        check_run(RunState.RUNNING, RunState.SKIPPED)  # a started run is cancelled, not skipped
    for final in (RunState.SKIPPED, RunState.CANCELLED):
        for other in RunState:
            with pytest.raises(InvalidTransition):
                check_run(final, other)
    assert TRY_TRANSITIONS[TryState.REMOVED] == frozenset()  # a removed task never comes back


def test_a_retry_waits_then_is_queued_again_and_a_user_clear_restarts_a_finished_try() -> None:
    check_try(TryState.RUNNING, TryState.UP_FOR_RETRY)
    check_try(TryState.UP_FOR_RETRY, TryState.QUEUED)
    with pytest.raises(InvalidTransition, match="a task try cannot go from up_for_retry to running"):
        check_try(TryState.UP_FOR_RETRY, TryState.RUNNING)
    for finished in (TryState.SUCCESS, TryState.FAILED, TryState.SKIPPED, TryState.UPSTREAM_FAILED):
        check_try(finished, TryState.NONE)


def test_plain_strings_from_the_database_are_checked_like_the_enums() -> None:
    from herald.store.states import can_move_run, can_move_try

    assert can_move_try("queued", "running") and not can_move_try("success", "queued")
    assert can_move_run("failed", "queued") and not can_move_run("success", "queued")
    with pytest.raises(ValueError):
        can_move_try("finished", "queued")  # not a state at all


def test_a_deferred_try_is_not_over_and_only_the_scheduler_ends_its_wait() -> None:
    assert not TryState.DEFERRED.finished
    assert sources(TRY_TRANSITIONS, TryState.DEFERRED) == {TryState.QUEUED, TryState.RUNNING}
    assert TRY_TRANSITIONS[TryState.DEFERRED] == {
        TryState.SUCCESS,
        TryState.FAILED,
        TryState.UP_FOR_RETRY,
        TryState.SKIPPED,
        TryState.QUEUED,  # an operator resuming in its next_method, under the same try number
    }
    with pytest.raises(InvalidTransition):
        check_try(TryState.DEFERRED, TryState.RUNNING)
