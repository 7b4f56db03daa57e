"""The authoring API: assets, schedules, DAGs, tasks and their dependencies."""

from __future__ import annotations

from datetime import timedelta

import pytest

from herald import DAG, Asset, AssetWatcher, EventBatch, MessageQueueTrigger, dag, task
from herald.sdk.assets import AssetAll, AssetAny
from herald.sdk.dag import collect_dags


def test_asset_expressions_evaluate_as_written() -> None:
    a, b, c = Asset("a"), Asset("b"), Asset("c")
    expr = (a & b) | c
    assert isinstance(expr, AssetAny) and isinstance(expr.objects[0], AssetAll)
    assert expr.evaluate({"c"})
    assert expr.evaluate({"a", "b"})
    assert not expr.evaluate({"a"})
    assert [x.name for x in expr.iter_assets()] == ["a", "b", "c"]
    assert expr.describe() == {"any": [{"all": ["a", "b"]}, "c"]}


def test_schedules_are_normalised() -> None:
    a, b = Asset("a"), Asset("b")
    assert DAG("one", [a]).schedule == a
    both = DAG("two", [a, b]).schedule
    assert isinstance(both, AssetAll) and both.evaluate({"a", "b"}) and not both.evaluate({"a"})
    assert DAG("cron", "*/5 * * * *").cron == "*/5 * * * *"
    assert DAG("manual", None).schedule is None


@pytest.mark.parametrize(
    ("schedule", "error"),
    [
        ("every minute", "not a valid cron expression"),
        ([], "is empty"),
        ([1], "not an Asset"),
        (42, "must be an Asset"),
    ],
)
def test_bad_schedules_say_what_is_wrong(schedule: object, error: str) -> None:
    with pytest.raises((ValueError, TypeError), match=error):
        DAG("bad", schedule)  # type: ignore[arg-type]


def test_batch_needs_an_asset_schedule_and_valid_numbers() -> None:
    with pytest.raises(ValueError, match="needs a schedule on assets"):
        DAG("x", None, batch=EventBatch(3, 1))
    with pytest.raises(ValueError, match="max_events"):
        EventBatch(max_events=0)
    assert EventBatch(max_events=2, max_wait=timedelta(seconds=3)).max_wait == 3.0  # type: ignore[arg-type]


def test_dag_decorator_builds_tasks_dependencies_and_registers_the_dag() -> None:
    orders = Asset("orders", watchers=[AssetWatcher("w", MessageQueueTrigger("local://orders"))])

    @dag(schedule=[orders], max_active_runs=2)
    def pipeline() -> None:
        @task
        def extract(triggering_asset_events: object) -> int:
            return 1

        @task(retries=3, retry_delay=timedelta(seconds=2), timeout=5)
        def transform(x: int) -> int:
            return x + 1

        @task
        def load(x: int) -> None:
            return None

        @task
        def audit() -> None:
            return None

        out = transform(extract())
        load(out) >> audit()

    with collect_dags() as found:
        built = pipeline()
    assert found == [built]
    assert built.dag_id == "pipeline" and built.max_active_runs == 2
    assert built.tasks["transform"].upstream == {"extract"}
    assert built.tasks["load"].upstream == {"transform"}
    assert built.tasks["audit"].upstream == {"load"}
    t = built.tasks["transform"]
    assert (t.retries, t.retry_delay, t.timeout) == (3, 2.0, 5.0)
    assert built.tasks["extract"].context_params() == {"triggering_asset_events"}


def test_calling_a_task_twice_gives_distinct_ids_like_airflow() -> None:
    @dag
    def twice() -> None:
        @task
        def step() -> None:
            return None

        step() >> step()

    built = twice()
    assert list(built.tasks) == ["step", "step__1"]
    assert built.tasks["step__1"].upstream == {"step"}


def test_a_task_called_outside_a_dag_explains_itself() -> None:
    @task
    def lonely() -> int:
        return 1

    with pytest.raises(RuntimeError, match="outside a @dag"):
        lonely()
    assert lonely.function() == 1  # type: ignore[attr-defined]


def test_a_cycle_is_rejected_with_its_path() -> None:
    @dag
    def loop() -> None:
        @task
        def a() -> None:
            return None

        @task
        def b() -> None:
            return None

        x, y = a(), b()
        x >> y
        y >> x

    with pytest.raises(ValueError, match="cycle"):
        loop()


def test_watchers_bind_to_one_asset_and_validate_their_trigger() -> None:
    w = AssetWatcher("w", MessageQueueTrigger("local://q"))
    Asset("first", watchers=[w])
    with pytest.raises(ValueError, match="already watches"):
        Asset("second", watchers=[w])
    with pytest.raises(TypeError, match="BaseEventTrigger"):
        AssetWatcher("w", "local://q")  # type: ignore[arg-type]
    # Airflow's rule: any name but a blank one (names derived from URIs hold / ? = & ...)
    with pytest.raises(ValueError, match="cannot be just whitespace"):
        Asset("   ")
