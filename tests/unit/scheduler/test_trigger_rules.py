"""Every trigger rule: when a waiting task runs, waits, is skipped, or fails upstream."""

from __future__ import annotations

import pytest

from herald.scheduler.tries import Upstream, decide_waiting, evaluate, run_outcome
from herald.sdk.dag import DAG, Task
from herald.sdk.trigger_rule import TriggerRule
from herald.store.states import RunState, TryState

S, F, K, UF, R = TryState.SUCCESS, TryState.FAILED, TryState.SKIPPED, TryState.UPSTREAM_FAILED, TryState.RUNNING
RUN, WAIT = TryState.SCHEDULED, None

# (rule, upstream states, what the waiting task becomes)
CASES = [
    # all_success: a failure fails it upstream, a skip skips it, it runs when every upstream succeeded
    ("all_success", [S, S], RUN),
    ("all_success", [S, R], WAIT),
    ("all_success", [F, R], TryState.UPSTREAM_FAILED),
    ("all_success", [UF, S], TryState.UPSTREAM_FAILED),
    ("all_success", [K, S], TryState.SKIPPED),
    ("all_success", [K, R], TryState.SKIPPED),
    # all_failed
    ("all_failed", [F, UF], RUN),
    ("all_failed", [F, R], WAIT),
    ("all_failed", [F, S], TryState.SKIPPED),
    ("all_failed", [K, F], TryState.SKIPPED),
    # all_done
    ("all_done", [S, F], RUN),
    ("all_done", [K, UF], RUN),
    ("all_done", [S, R], WAIT),
    # all_done_min_one_success: a skipped upstream skips it; done without a success fails upstream
    ("all_done_min_one_success", [S, F], RUN),
    ("all_done_min_one_success", [S, R], WAIT),
    ("all_done_min_one_success", [K, S], TryState.SKIPPED),
    ("all_done_min_one_success", [F, UF], TryState.UPSTREAM_FAILED),
    # all_done_setup_success: no setup tasks in Herald, so as all_done
    ("all_done_setup_success", [F, S], RUN),
    ("all_done_setup_success", [F, R], WAIT),
    # one_success fires as soon as one upstream succeeded
    ("one_success", [S, R], RUN),
    ("one_success", [F, R], WAIT),
    ("one_success", [K, K], TryState.SKIPPED),
    ("one_success", [F, K], TryState.UPSTREAM_FAILED),
    # one_failed
    ("one_failed", [F, R], RUN),
    ("one_failed", [UF, R], RUN),
    ("one_failed", [S, R], WAIT),
    ("one_failed", [S, K], TryState.SKIPPED),
    # one_done: a success or a failure, skips do not count
    ("one_done", [S, R], RUN),
    ("one_done", [F, R], RUN),
    ("one_done", [K, R], WAIT),
    ("one_done", [K, UF], TryState.SKIPPED),
    # none_failed
    ("none_failed", [S, K], RUN),
    ("none_failed", [K, K], RUN),
    ("none_failed", [S, R], WAIT),
    ("none_failed", [F, R], TryState.UPSTREAM_FAILED),
    # none_failed_min_one_success
    ("none_failed_min_one_success", [S, K], RUN),
    ("none_failed_min_one_success", [K, K], TryState.SKIPPED),
    ("none_failed_min_one_success", [S, R], WAIT),
    ("none_failed_min_one_success", [UF, S], TryState.UPSTREAM_FAILED),
    # none_skipped
    ("none_skipped", [S, F], RUN),
    ("none_skipped", [S, R], WAIT),
    ("none_skipped", [K, R], TryState.SKIPPED),
    # all_skipped
    ("all_skipped", [K, K], RUN),
    ("all_skipped", [K, R], WAIT),
    ("all_skipped", [K, S], TryState.SKIPPED),
    ("all_skipped", [F, R], TryState.SKIPPED),
    # always: at once
    ("always", [R, R], RUN),
    ("always", [F, K], RUN),
]


@pytest.mark.parametrize(("rule", "upstream", "expected"), CASES)
def test_rule(rule: str, upstream: list[TryState], expected: TryState | None) -> None:
    assert evaluate(rule, Upstream.count(upstream)) == expected


def test_every_rule_is_covered() -> None:
    assert {TriggerRule(c[0]) for c in CASES} == set(TriggerRule)


@pytest.mark.parametrize("rule", list(TriggerRule))
def test_a_task_without_upstream_runs_whatever_its_rule(rule: TriggerRule) -> None:
    assert evaluate(rule, Upstream.count([])) is TryState.SCHEDULED


def test_removed_upstream_tasks_are_left_out() -> None:
    assert evaluate("all_success", Upstream.count([S, TryState.REMOVED])) is TryState.SCHEDULED


def test_unknown_rule_is_refused_when_the_task_is_defined() -> None:
    with pytest.raises(ValueError, match=r"unknown trigger_rule 'sometimes'.*all_success"):
        Task("t", print, trigger_rule="sometimes")


def _dag(*tasks: tuple[str, set[str], str]) -> DAG:
    dag = DAG("d")
    for task_id, upstream, rule in tasks:
        dag.tasks[task_id] = Task(task_id, print, upstream=upstream, trigger_rule=rule)
    return dag


def test_a_skip_cascades_down_all_success_and_stops_at_none_failed() -> None:
    # Given branch -> a -> b -> join(none_failed_min_one_success) <- c
    dag = _dag(
        ("branch", set(), "all_success"),
        ("a", {"branch"}, "all_success"),
        ("b", {"a"}, "all_success"),
        ("c", {"branch"}, "all_success"),
        ("join", {"b", "c"}, "none_failed_min_one_success"),
    )
    # When the branch succeeded and skipped `a`
    states = {"branch": S, "a": K, "b": TryState.NONE, "c": TryState.NONE, "join": TryState.NONE}
    decided = decide_waiting(dag, states)
    # Then b is skipped, c runs, and join waits for c
    assert decided == {"b": K, "c": RUN}
    assert states["join"] is TryState.NONE
    states["c"] = S
    assert decide_waiting(dag, states) == {"join": RUN}


def test_a_failure_fails_every_all_success_task_below_it() -> None:
    dag = _dag(("a", set(), "all_success"), ("b", {"a"}, "all_success"), ("c", {"b"}, "all_success"))
    states = {"a": F, "b": TryState.NONE, "c": TryState.NONE}
    assert decide_waiting(dag, states) == {"b": UF, "c": UF}


def test_cleanup_with_all_done_runs_after_a_failure() -> None:
    dag = _dag(("a", set(), "all_success"), ("cleanup", {"a"}, "all_done"))
    assert decide_waiting(dag, {"a": F, "cleanup": TryState.NONE}) == {"cleanup": RUN}


class TestRunOutcome:
    def test_waits_while_a_try_has_not_ended(self) -> None:
        dag = _dag(("a", set(), "all_success"), ("b", {"a"}, "all_success"))
        assert run_outcome(dag, {"a": S, "b": TryState.UP_FOR_RETRY}) is None

    def test_fails_when_a_leaf_failed_or_was_upstream_failed(self) -> None:
        dag = _dag(("a", set(), "all_success"), ("b", {"a"}, "all_success"))
        assert run_outcome(dag, {"a": F, "b": UF}) is RunState.FAILED

    def test_succeeds_when_leaves_succeeded_or_were_skipped_even_after_a_failure_upstream(self) -> None:
        dag = _dag(("a", set(), "all_success"), ("cleanup", {"a"}, "all_done"), ("x", set(), "all_success"))
        assert run_outcome(dag, {"a": F, "cleanup": S, "x": K}) is RunState.SUCCESS

    def test_without_its_dag_any_failure_fails_the_run(self) -> None:
        assert run_outcome(None, {"a": S, "b": F}) is RunState.FAILED
        assert run_outcome(None, {"a": S, "b": K}) is RunState.SUCCESS
