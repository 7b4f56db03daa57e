"""Authoring: `with DAG`, operators, default_args, dependencies, groups, mapping, warnings and refusals."""

from __future__ import annotations

from datetime import timedelta

import pendulum
import pytest

from herald import (
    DAG,
    BashOperator,
    EmptyOperator,
    Label,
    Param,
    PythonOperator,
    TaskGroup,
    TriggerRule,
    chain,
    cross_downstream,
    dag,
    task,
    task_group,
)
from herald.sdk.dag import collect_dags


def test_with_dag_collects_operators_and_registers_the_dag() -> None:
    with collect_dags() as found, DAG("classic", schedule="@daily", start_date=pendulum.datetime(2024, 1, 1)) as d:
        a = EmptyOperator(task_id="a")
        b = BashOperator(task_id="b", bash_command="echo hi")
        c = PythonOperator(task_id="c", python_callable=lambda: 1)
        a >> [b, c]
    assert found == [d]
    assert d.task_ids == ["a", "b", "c"]
    assert d.tasks["b"].upstream == {"a"} and d.tasks["c"].upstream == {"a"}
    assert d.get_task("b") is b and b.dag_id == "classic" and a.downstream_task_ids == {"b", "c"}
    assert d.start_date == pendulum.datetime(2024, 1, 1) and d.catchup is False


def test_default_args_apply_unless_the_task_sets_them() -> None:
    args = {"retries": 3, "retry_delay": timedelta(seconds=5), "owner": "data", "queue": "q1"}
    with DAG("defaults", default_args=args) as d:
        a = EmptyOperator(task_id="a")
        b = EmptyOperator(task_id="b", retries=0, queue="q2")

        @task
        def flow() -> None:
            return None

        flow()
    assert (d.tasks["a"].retries, d.tasks["a"].retry_delay, d.tasks["a"].queue, a.owner) == (3, 5.0, "q1", "data")
    assert (d.tasks["b"].retries, d.tasks["b"].queue) == (0, "q2")
    assert (d.tasks["flow"].retries, d.tasks["flow"].queue) == (3, "q1")
    assert b.retries == 0


def test_dependencies_between_operators_outputs_lists_and_labels() -> None:
    with DAG("deps") as d:
        a, b, c, e = (EmptyOperator(task_id=x) for x in "abce")

        @task
        def f(x: int) -> int:
            return x

        out = f(a.output)
        [b, c] >> e
        out << b
        a >> Label("why") >> c
        cross_downstream([b, c], [out])
    assert d.tasks["e"].upstream == {"b", "c"}
    assert d.tasks["f"].upstream == {"a", "b", "c"}
    assert d.tasks["c"].upstream == {"a"}


def test_chain_pairs_lists_and_rejects_unequal_ones() -> None:
    with DAG("chained") as d:
        a, b, c, x, y = (EmptyOperator(task_id=n) for n in "abcxy")
        chain(a, [b, c], [x, y])
    assert d.tasks["b"].upstream == {"a"} and d.tasks["x"].upstream == {"b"} and d.tasks["y"].upstream == {"c"}
    with DAG("bad_chain"), pytest.raises(ValueError, match="different lengths"):
        chain([EmptyOperator(task_id="p")], [EmptyOperator(task_id="q"), EmptyOperator(task_id="r")])


def test_task_groups_prefix_ids_share_default_args_and_link_as_a_whole() -> None:
    with DAG("grouped") as d:
        start = EmptyOperator(task_id="start")
        with TaskGroup("extract", default_args={"retries": 2}) as tg:
            one = EmptyOperator(task_id="one")
            two = EmptyOperator(task_id="two")
            one >> two
            with TaskGroup("inner"):
                EmptyOperator(task_id="deep")

        @task_group
        def load() -> None:
            @task
            def save() -> int:
                return 1

            save()

        end = EmptyOperator(task_id="end")
        start >> tg >> end
        tg >> load()
    assert set(d.tasks) >= {"extract.one", "extract.two", "extract.inner.deep", "load.save"}
    assert d.tasks["extract.one"].retries == 2
    assert d.tasks["extract.one"].upstream == {"start"} and d.tasks["extract.inner.deep"].upstream == {"start"}
    assert d.tasks["end"].upstream == {"extract.two", "extract.inner.deep"}
    assert d.tasks["load.save"].upstream == {"extract.two", "extract.inner.deep"}


def test_duplicate_operator_ids_are_an_error_but_taskflow_renames() -> None:
    with DAG("dupes"):
        EmptyOperator(task_id="a")
        with pytest.raises(ValueError, match="already has a task"):
            EmptyOperator(task_id="a")


def test_templated_xcom_args_make_their_task_upstream() -> None:
    with DAG("xcomarg") as d:
        a = PythonOperator(task_id="a", python_callable=lambda: 1)
        PythonOperator(task_id="b", python_callable=print, op_args=[a.output])
    assert d.tasks["b"].upstream == {"a"}


def test_ignored_arguments_warn_and_harmful_ones_are_refused() -> None:
    with DAG("warned", access_control={"role": {"can_read"}}) as d:
        EmptyOperator(task_id="a", pool="small", priority_weight=1)
    assert any("access_control" in w for w in d.warnings)
    assert any("pool='small'" in w for w in d.warnings)
    assert not any("priority_weight" in w for w in d.warnings)  # Airflow's default: nothing ignored
    with pytest.raises(ValueError, match="depends_on_past"), DAG("refused"):
        EmptyOperator(task_id="a", depends_on_past=True)
    with pytest.raises(TypeError, match="on_failure_callback must be a callable"):
        DAG("cb", on_failure_callback="not.a.callable")
    assert DAG("cb", on_success_callback=[print], on_failure_callback=print).callbacks == {
        "on_success_callback": [print],
        "on_failure_callback": [print],
    }
    with pytest.raises(ValueError, match="schedule_interval"):
        DAG("old", schedule_interval="@daily")
    with pytest.raises(TypeError, match="unexpected argument 'colour'"):
        DAG("typo", colour="red")
    with pytest.raises(TypeError, match="Invalid arguments"), DAG("typo2"):
        EmptyOperator(task_id="a", retires=2)
    with pytest.raises(ValueError, match="not supported by Herald"):
        DAG("continuous", schedule="@continuous")
    with pytest.raises(ValueError, match="must be positive"):
        DAG("delta", schedule=timedelta(0))


def test_trigger_rules_are_checked_and_stored() -> None:
    with DAG("rules") as d:
        EmptyOperator(task_id="a", trigger_rule=TriggerRule.ALL_DONE)
        EmptyOperator(task_id="b", trigger_rule="none_failed_min_one_success")
        with pytest.raises(ValueError, match="not a trigger rule"):
            EmptyOperator(task_id="c", trigger_rule="sometimes")
    assert d.tasks["a"].trigger_rule == "all_done" and d.tasks["b"].trigger_rule == "none_failed_min_one_success"


def test_a_param_default_that_breaks_its_schema_is_an_import_error() -> None:
    with pytest.raises(ValueError, match="param 'n'"):
        DAG("params", params={"n": Param("x", type="integer")})
    d = DAG("params_ok", params={"n": Param(5, type="integer", minimum=1), "plain": "v"})
    assert d.params["plain"] == "v"


def test_dag_decorator_takes_airflow_arguments() -> None:
    @dag(
        schedule="0 * * * *",
        start_date=pendulum.datetime(2024, 1, 1),
        catchup=True,
        max_active_tasks=4,
        dagrun_timeout=timedelta(minutes=5),
        is_paused_upon_creation=True,
        tags=["t"],
        doc_md="doc",
        default_args={"retries": 1},
    )
    def decorated() -> None:
        @task
        def one() -> int:
            return 1

        one()

    d = decorated()
    assert (d.catchup, d.max_active_tasks, d.dagrun_timeout, d.is_paused_upon_creation) == (True, 4, 300.0, True)
    assert d.tasks["one"].retries == 1 and d.tags == ["t"] and d.doc_md == "doc"


def test_taskflow_variants_and_override() -> None:
    with DAG("variants") as d:

        @task.branch
        def choose() -> str:
            return "x"

        @task.short_circuit(ignore_downstream_trigger_rules=False)
        def gate() -> bool:
            return True

        @task.bash(env={"A": "1"})
        def cmd() -> str:
            return "echo $A"

        @task.sensor(poke_interval=1, timeout=10, mode="poke")
        def wait() -> bool:
            return True

        @task(multiple_outputs=True)
        def several() -> dict[str, int]:
            return {"a": 1}

        choose()
        gate()
        cmd()
        wait()
        several.override(task_id="renamed", retries=4)()
    kinds = {tid: t.kind for tid, t in d.tasks.items()}
    assert kinds == {
        "choose": "branch",
        "gate": "short_circuit",
        "cmd": "bash",
        "wait": "sensor",
        "renamed": "python",
    }
    assert d.tasks["wait"].options["sensor_timeout"] == 10
    assert d.tasks["renamed"].retries == 4 and d.tasks["renamed"].multiple_outputs
    with pytest.raises(AttributeError, match="not supported"):
        _ = task.virtualenv
    with pytest.raises(TypeError, match="unexpected argument"):
        task.bash(poke_interval=3)


def test_mapped_tasks_know_their_expansion_inputs() -> None:
    with DAG("mapped") as d:

        @task
        def numbers() -> list[int]:
            return [1, 2]

        @task
        def add(x: int, y: int, base: int) -> int:
            return x + y + base

        add.partial(base=100).expand(x=numbers(), y=[10, 20])
        BashOperator.partial(task_id="echo", retries=2).expand(bash_command=["echo 1", "echo 2"])
        PythonOperator.partial(task_id="kw", python_callable=print).expand_kwargs([{"op_args": [1]}, {"op_args": [2]}])
    mapped = d.tasks["add"].mapped
    assert mapped is not None and d.tasks["add"].upstream == {"numbers"}
    combos = mapped.combinations(lambda v: [1, 2] if not isinstance(v, list) else v)
    assert combos == [{"x": 1, "y": 10}, {"x": 1, "y": 20}, {"x": 2, "y": 10}, {"x": 2, "y": 20}]
    assert mapped.length(lambda v: [1, 2] if not isinstance(v, list) else v) == 4
    assert d.tasks["echo"].retries == 2 and d.tasks["echo"].mapped is not None
    kw = d.tasks["kw"].mapped
    assert kw is not None and kw.length(lambda v: v) == 2
    with pytest.raises(TypeError, match="unexpected argument"), DAG("bad_map"):
        BashOperator.partial(task_id="e").expand(nope=[1])


def test_the_scheduler_can_count_a_mapped_tasks_expansions() -> None:
    from herald.sdk.dag import expansion_count

    with DAG("count") as d:

        @task
        def items() -> list[int]:
            return [1, 2, 3]

        @task
        def each(x: int, y: str) -> str:
            return f"{x}{y}"

        each.expand(x=items(), y=["a", "b"])
    assert expansion_count(d.tasks["each"], {"items": {"return_value": [1, 2, 3]}}) == 6
    assert expansion_count(d.tasks["each"], {"items": {"return_value": []}}) == 0
