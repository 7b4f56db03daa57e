"""Dynamic task mapping, the scheduler's side: how a mapped task expands and what its downstream sees."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pendulum

from herald import DAG, task
from herald.scheduler.mapping import check_source, expansion, run_xcoms
from herald.scheduler.runs import cron_ticks
from herald.scheduler.tries import decide_waiting, run_outcome
from herald.sdk.dag import Task
from herald.store.states import RunState, TryState

S, F, K, N = TryState.SUCCESS, TryState.FAILED, TryState.SKIPPED, TryState.NONE


def _mapped_dag() -> DAG:
    with DAG("m") as dag:

        @task
        def numbers() -> list[int]:
            return [1, 2, 3]

        @task
        def add(x: int, y: int) -> int:
            return x + y

        @task
        def label(a: int, b: str) -> str:
            return f"{a}{b}"

        @task
        def total(values: list[int]) -> int:
            return sum(values)

        out = numbers()
        added = add.partial(y=1).expand(x=out)
        total(added)
        add.override(task_id="grid").expand(x=[1, 2], y=[10, 20, 30])
        add.override(task_id="doubled").expand(x=out.map(lambda v: v * 2), y=[0])
        label.expand_kwargs([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}])
    return dag


def _t(dag: DAG, task_id: str) -> Task:
    return dag.tasks[task_id]


def test_a_mapped_task_gets_one_map_index_per_value() -> None:
    dag = _mapped_dag()
    xcom = {"numbers": {"return_value": [5, 6, 7, 8]}}
    assert expansion(_t(dag, "add"), xcom).count == 4
    assert expansion(_t(dag, "doubled"), xcom).count == 4  # XComArg.map keeps one value per item
    # several mapped arguments: their cross product, as Airflow's expand
    assert expansion(_t(dag, "grid"), {}).count == 6
    assert expansion(_t(dag, "label"), {}).count == 2  # expand_kwargs: one per dict


def test_a_dict_is_expanded_per_item() -> None:
    dag = _mapped_dag()
    assert expansion(_t(dag, "add"), {"numbers": {"return_value": {"a": 1, "b": 2}}}).count == 2


def test_nothing_to_map_over_skips_the_task() -> None:
    found = expansion(_t(_mapped_dag(), "add"), {"numbers": {"return_value": []}})
    assert (found.count, found.state) == (0, TryState.SKIPPED)


def test_a_missing_upstream_value_fails_upstream_and_a_bad_one_fails() -> None:
    dag = _mapped_dag()
    missing = expansion(_t(dag, "add"), {})
    assert missing.state is TryState.UPSTREAM_FAILED and "numbers" in (missing.error or "")
    wrong = expansion(_t(dag, "add"), {"numbers": {"return_value": "abc"}})
    assert wrong.state is TryState.FAILED and "str" in (wrong.error or "")


def test_more_map_indexes_than_max_map_length_fail_with_the_reason() -> None:
    dag = _mapped_dag()
    over = expansion(_t(dag, "add"), {"numbers": {"return_value": list(range(11))}}, max_length=10)
    assert over.state is TryState.FAILED
    assert "11 map indexes" in (over.error or "") and "max_map_length=10" in (over.error or "")
    assert expansion(_t(dag, "add"), {"numbers": {"return_value": list(range(10))}}, max_length=10).count == 10
    # a cross product counts as a whole
    assert expansion(_t(dag, "grid"), {}, max_length=5).state is TryState.FAILED


def test_an_upstream_of_a_mapped_task_must_return_something_mappable() -> None:
    dag = _mapped_dag()
    assert check_source(dag, "numbers", [1, 2], {}) is None
    assert "did not push XCom for task mapping" in (check_source(dag, "numbers", None, {}) or "")
    assert "unmappable return type 'int'" in (check_source(dag, "numbers", 3, {}) or "")
    too_long = check_source(dag, "numbers", list(range(5)), {}, max_length=4)
    assert too_long is not None and "5 > 4" in too_long
    assert check_source(dag, "add", None, {}) is None  # nothing maps over add's own value


def _row(task_id: str, map_index: int, result: Any, xcom: dict[str, Any] | None = None) -> Any:
    return SimpleNamespace(run_pk=1, task_id=task_id, map_index=map_index, result=result, xcom=xcom)


def test_downstream_tasks_see_a_mapped_tasks_results_as_a_list_in_map_index_order() -> None:
    dag = _mapped_dag()
    rows = [
        _row("numbers", -1, [1, 2, 3], {"k": "v"}),
        _row("add", 2, 4, {"note": "c"}),
        _row("add", 0, 2),
        _row("add", 1, None),  # returned None: no value, as Airflow pushes no XCom for it
    ]
    xcom = run_xcoms({"m": dag}, rows)[1]
    assert xcom["numbers"] == {"return_value": [1, 2, 3], "k": "v"}
    assert xcom["add"] == {"return_value": [2, 4], "note": ["c"]}


def test_trigger_rules_count_every_map_index_of_a_mapped_upstream() -> None:
    dag = _mapped_dag()
    states: dict[str, Any] = {"numbers": [S], "add": [S, S, TryState.RUNNING], "total": [N]}
    assert decide_waiting(dag, states) == {}  # one map index still waiting
    states = {"numbers": [S], "add": [S, F, S], "total": [N]}
    assert decide_waiting(dag, states) == {"total": TryState.UPSTREAM_FAILED}
    states = {"numbers": [S], "add": [S, S, S], "total": [N]}
    assert decide_waiting(dag, states) == {"total": TryState.SCHEDULED}


def test_a_run_fails_when_a_map_index_of_a_leaf_failed() -> None:
    dag = _mapped_dag()
    done = {"numbers": [S], "add": [S, S], "total": [S], "grid": [S] * 6, "doubled": [S], "label": [S, F]}
    assert run_outcome(dag, done) is RunState.FAILED
    done["label"] = [S, S]
    assert run_outcome(dag, done) is RunState.SUCCESS
    done["label"] = [S, TryState.RUNNING]
    assert run_outcome(dag, done) is None


def test_catchup_makes_a_run_per_tick_up_to_now_and_stops_at_end_date() -> None:
    start = pendulum.datetime(2024, 1, 1)
    now = datetime(2024, 1, 5, 12, tzinfo=UTC)
    daily = DAG("d", schedule="0 0 * * *", start_date=start, catchup=True)
    ticks, after = cron_ticks(daily, datetime(2024, 1, 1, tzinfo=UTC), now, limit=100)
    assert ticks == [datetime(2024, 1, d, tzinfo=UTC) for d in range(1, 6)]
    assert after == datetime(2024, 1, 6, tzinfo=UTC)
    ticks, after = cron_ticks(daily, datetime(2024, 1, 1, tzinfo=UTC), now, limit=2)
    assert len(ticks) == 2 and after == datetime(2024, 1, 3, tzinfo=UTC)  # the rest in later passes
    ended = DAG("e", schedule="0 0 * * *", start_date=start, end_date=pendulum.datetime(2024, 1, 2, 6), catchup=True)
    ticks, after = cron_ticks(ended, datetime(2024, 1, 1, tzinfo=UTC), now, limit=100)
    assert ticks == [datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)] and after is None


def test_without_catchup_only_the_latest_due_tick_runs() -> None:
    daily = DAG("d", schedule="0 0 * * *", start_date=pendulum.datetime(2024, 1, 1))
    ticks, after = cron_ticks(daily, datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 5, 12, tzinfo=UTC), 100)
    assert ticks == [datetime(2024, 1, 5, tzinfo=UTC)] and after == datetime(2024, 1, 6, tzinfo=UTC)
