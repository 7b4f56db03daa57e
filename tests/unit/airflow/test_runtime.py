"""The try runner: context, templating, operators, skips, branches, sensors, XCom and failure modes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pendulum
import pytest

from herald import (
    DAG,
    AirflowFailException,
    AirflowSkipException,
    BaseOperator,
    BashOperator,
    BranchPythonOperator,
    EmptyOperator,
    Param,
    PokeReturnValue,
    PythonOperator,
    PythonSensor,
    ShortCircuitOperator,
    TaskGroup,
    get_current_context,
    task,
)
from herald.store.states import TryState
from tests.unit.airflow.helpers import run


def test_python_operator_renders_templates_and_gets_context_keys_by_name() -> None:
    seen: dict[str, Any] = {}

    def hello(
        name: str, ti: Any, ds: str, params: dict[str, Any], templates_dict: dict[str, Any], **context: Any
    ) -> str:
        seen.update(name=name, ds=ds, params=params, td=templates_dict, conf=context["dag_run"].conf)
        seen["current"] = get_current_context()["run_id"]
        ti.xcom_push("extra", [1, 2])
        return "done"

    with DAG("py", schedule="0 10 * * *", params={"n": Param(1, type="integer")}) as d:
        PythonOperator(
            task_id="a",
            python_callable=hello,
            op_kwargs={"name": "{{ run_id }}-{{ params.n }}-{{ dag_run.conf.get('who', 'nobody') }}"},
            templates_dict={"day": "{{ ds_nodash }}"},
        )
    result = run(d, "a", run_type="scheduled", conf={"n": 7, "who": "me"})
    assert result["state"] == TryState.SUCCESS, result["log"]
    assert result["result"] == "done" and result["xcom"] == {"extra": [1, 2]}
    assert seen["name"] == "scheduled__1-7-me"
    assert seen["ds"] == "2024-05-01" and seen["td"] == {"day": "20240501"}
    assert seen["params"] == {"n": 7, "who": "me"} and seen["current"] == "scheduled__1"


def test_event_runs_have_no_logical_date_and_templates_using_it_fail() -> None:
    seen: dict[str, Any] = {}

    def look(**context: Any) -> None:
        seen.update(logical=context["logical_date"], run=context["dag_run"].logical_date, has_ds="ds" in context)

    with DAG("events") as d:
        PythonOperator(task_id="look", python_callable=look)
        BashOperator(task_id="ds", bash_command="echo {{ ds }}")
    assert run(d, "look", run_type="asset_triggered")["state"] == TryState.SUCCESS
    assert seen == {"logical": None, "run": None, "has_ds": False}
    failed = run(d, "ds", run_type="asset_triggered")
    assert failed["state"] == TryState.FAILED and "'ds' is undefined" in failed["error"]


def test_cron_runs_get_the_tick_as_logical_date_and_data_interval() -> None:
    seen: dict[str, Any] = {}

    @task
    def look(logical_date: Any, data_interval_start: Any, data_interval_end: Any, ts: str) -> None:
        seen.update(l=logical_date, s=data_interval_start, e=data_interval_end, ts=ts)

    with DAG("cron", schedule="*/15 * * * *") as d:
        look()
    assert run(d, "look", run_type="scheduled", start_date="2024-05-01T10:31:02+00:00")["state"] == TryState.SUCCESS
    tick = pendulum.datetime(2024, 5, 1, 10, 30)
    assert seen["l"] == tick and seen["s"] == tick and seen["e"] == tick
    assert seen["ts"] == "2024-05-01T10:30:00+00:00"


def test_invalid_conf_fails_without_retry() -> None:
    with DAG("params", params={"n": Param(1, type="integer", minimum=0)}) as d:
        EmptyOperator(task_id="a", retries=3)
    result = run(d, "a", conf={"n": -1})
    assert result["state"] == TryState.FAILED and result["retry"] is False
    assert "param 'n'" in result["error"]


def test_bash_operator_last_line_skip_code_and_failure_output(tmp_path: Path) -> None:
    with DAG("bash") as d:
        BashOperator(
            task_id="ok",
            bash_command="echo first; echo $GREETING-$AIRFLOW_CTX_TASK_ID; pwd",
            env={"GREETING": "hi"},
            cwd=str(tmp_path),
        )
        BashOperator(task_id="skip", bash_command="echo skipping; exit 99")
        BashOperator(task_id="fail", bash_command="echo broken-output; exit 3")
        BashOperator(task_id="keep_env", bash_command="echo $HOME", env={"X": "1"}, append_env=True)
        BashOperator(task_id="replace_env", bash_command="echo home=$HOME", env={"X": "1"})
    ok = run(d, "ok")
    assert ok["state"] == TryState.SUCCESS and ok["result"] == str(tmp_path)
    assert "hi-ok" in ok["log"]
    skipped = run(d, "skip")
    assert skipped["state"] == TryState.SKIPPED and skipped["result"] is None
    failed = run(d, "fail")
    assert failed["state"] == TryState.FAILED and "non-zero exit code 3" in failed["error"]
    assert "broken-output" in failed["log"] and failed["retry"] is True
    assert run(d, "keep_env")["result"] != ""
    assert run(d, "replace_env")["result"] == "home="


def test_bash_command_from_a_template_file(tmp_path: Path) -> None:
    (tmp_path / "script.sh").write_text("echo run={{ run_id }}\n")
    with DAG("bash_file", template_searchpath=str(tmp_path)) as d:
        BashOperator(task_id="file", bash_command="script.sh")
    assert run(d, "file")["result"] == "run=manual__1"


def test_branch_skips_the_direct_downstream_tasks_not_chosen() -> None:
    with DAG("branch") as d:
        br = BranchPythonOperator(task_id="br", python_callable=lambda: ["left", "grp"])
        left, right = EmptyOperator(task_id="left"), EmptyOperator(task_id="right")
        with TaskGroup("grp") as grp:
            EmptyOperator(task_id="inner")
        br >> [left, right, grp]
        right >> EmptyOperator(task_id="after_right")
    result = run(d, "br")
    assert result["state"] == TryState.SUCCESS and result["result"] == ["left", "grp"]
    assert result["skip"] == ["right"]

    with DAG("bad_branch") as bad:
        BranchPythonOperator(task_id="br", python_callable=lambda: "nowhere") >> EmptyOperator(task_id="x")
    assert "Invalid tasks found" in run(bad, "br")["error"]


def test_short_circuit_skips_all_or_only_direct_downstream() -> None:
    for ignore, expected in ((True, ["a", "b"]), (False, ["a"])):
        with DAG("sc") as d:
            sc = ShortCircuitOperator(task_id="sc", python_callable=lambda: 0, ignore_downstream_trigger_rules=ignore)
            sc >> EmptyOperator(task_id="a") >> EmptyOperator(task_id="b")
        result = run(d, "sc")
        assert result["state"] == TryState.SUCCESS and result["skip"] == expected
    with DAG("sc_true") as d2:
        ShortCircuitOperator(task_id="sc", python_callable=lambda: "yes") >> EmptyOperator(task_id="a")
    assert run(d2, "sc")["skip"] == []


def test_skip_and_fail_exceptions_set_state_and_retry() -> None:
    def skip() -> None:
        raise AirflowSkipException("not today")

    def fail() -> None:
        raise AirflowFailException("fatal")

    def boom() -> None:
        raise ValueError("boom")

    with DAG("exc") as d:
        PythonOperator(task_id="skip", python_callable=skip)
        PythonOperator(task_id="fail", python_callable=fail, retries=3)
        PythonOperator(task_id="boom", python_callable=boom, retries=3)
    assert run(d, "skip")["state"] == TryState.SKIPPED
    fail_result = run(d, "fail")
    assert fail_result["state"] == TryState.FAILED and fail_result["retry"] is False
    boom_result = run(d, "boom")
    assert boom_result["state"] == TryState.FAILED and boom_result["retry"] is True and "boom" in boom_result["log"]


def test_custom_operator_with_template_fields_and_xcom_pull() -> None:
    class Greet(BaseOperator):
        template_fields = ("who",)
        template_ext = (".txt",)

        def __init__(self, who: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.who = who

        def execute(self, context: Any) -> str:
            up = context["ti"].xcom_pull(task_ids="up")
            many = context["ti"].xcom_pull(task_ids=["up", "missing"], default="none")
            return f"hello {self.who} {up} {many}"

    with DAG("custom", default_args={"retries": 1}) as d:
        up = EmptyOperator(task_id="up")
        g = Greet(task_id="greet", who="{{ var.value.name }}")
        up >> g
    assert d.tasks["greet"].retries == 1
    import os

    os.environ["AIRFLOW_VAR_NAME"] = "world"
    try:
        result = run(d, "greet", upstream={"up": 5})
    finally:
        del os.environ["AIRFLOW_VAR_NAME"]
    assert result["result"] == "hello world 5 [5, 'none']", result["log"]
    assert g.who == "{{ var.value.name }}"  # rendering works on a copy: the DAG's operator is unchanged


def test_multiple_outputs_push_each_key_and_resolve_without_the_new_scheduler_keys() -> None:
    with DAG("multi") as d:

        @task(multiple_outputs=True)
        def pair() -> dict[str, int]:
            return {"a": 1, "b": 2}

        @task
        def use(a: int, b: int) -> int:
            return a * 10 + b

        out = pair()
        use(out["a"], out["b"])
    first = run(d, "pair")
    assert first["result"] == {"a": 1, "b": 2} and first["xcom"] == {"a": 1, "b": 2}
    assert run(d, "use", upstream={"pair": first["result"]})["result"] == 12
    assert run(d, "use", xcom={"pair": {"a": 3, "b": 4}})["result"] == 34


def test_taskflow_args_are_templated_and_variants_run() -> None:
    with DAG("flow") as d:

        @task
        def echo(text: str) -> str:
            return text

        @task.bash
        def cmd(word: str) -> str:
            return "echo " + word + " {{ run_id }}"

        @task.branch
        def pick() -> str:
            return "b"

        @task.short_circuit
        def gate() -> bool:
            return False

        echo("id={{ run_id }}")
        cmd("hi")
        pick() >> [EmptyOperator(task_id="a"), EmptyOperator(task_id="b")]
        gate() >> EmptyOperator(task_id="c")
    assert run(d, "echo")["result"] == "id=manual__1"
    assert run(d, "cmd")["result"] == "hi manual__1"
    assert run(d, "pick")["skip"] == ["a"]
    assert run(d, "gate")["skip"] == ["c"]


def test_sensors_poke_until_done_time_out_or_soft_fail() -> None:
    calls = {"n": 0}

    def ready() -> bool:
        calls["n"] += 1
        return calls["n"] >= 3

    with DAG("sensors") as d:
        PythonSensor(task_id="ready", python_callable=ready, poke_interval=0.01, timeout=30)
        PythonSensor(task_id="never", python_callable=lambda: False, poke_interval=0.01, timeout=0.05, retries=2)
        PythonSensor(task_id="soft", python_callable=lambda: False, poke_interval=0.01, timeout=0.05, soft_fail=True)

        @task.sensor(poke_interval=0.01, timeout=30)
        def value() -> PokeReturnValue:
            return PokeReturnValue(is_done=True, xcom_value={"found": 1})

        value()
    assert run(d, "ready")["state"] == TryState.SUCCESS and calls["n"] == 3
    never = run(d, "never")
    assert never["state"] == TryState.FAILED and never["retry"] is False and "timed out" in never["error"]
    assert run(d, "soft")["state"] == TryState.SKIPPED
    assert run(d, "value")["result"] == {"found": 1}


def test_mapped_tries_run_their_own_combination() -> None:
    with DAG("mapped") as d:

        @task
        def add(x: int, y: int) -> int:
            return x + y

        add.partial(y=100).expand(x=[1, 2, 3])
        BashOperator.partial(task_id="echo").expand(bash_command=["echo a", "echo b"])
    assert run(d, "add", map_index=2)["result"] == 103
    assert run(d, "echo", map_index=1)["result"] == "b"
    no_index = run(d, "add")
    assert no_index["state"] == TryState.FAILED and "no map index" in no_index["error"]


def test_callbacks_run_with_the_context() -> None:
    calls: list[tuple[str, str]] = []

    def on(kind: str) -> Any:
        return lambda context: calls.append((kind, context["ti"].task_id))

    def boom() -> None:
        raise ValueError("x")

    with DAG("callbacks", default_args={"on_failure_callback": on("failure")}) as d:
        PythonOperator(task_id="ok", python_callable=lambda: 1, on_success_callback=on("success"))
        PythonOperator(task_id="retry", python_callable=boom, retries=1, on_retry_callback=on("retry"))
        PythonOperator(task_id="fail", python_callable=boom)
    run(d, "ok")
    run(d, "retry", try_number=1)
    run(d, "retry", try_number=2)
    run(d, "fail")
    assert calls == [("success", "ok"), ("retry", "retry"), ("failure", "retry"), ("failure", "fail")]


def test_native_rendering_and_user_macros() -> None:
    seen: dict[str, Any] = {}
    with DAG("native", render_template_as_native_obj=True, user_defined_macros={"double": lambda x: x * 2}) as d:
        PythonOperator(
            task_id="a",
            python_callable=lambda value: seen.update(value=value),
            op_kwargs={"value": "{{ [double(2), 3] }}"},
        )
    run(d, "a")
    assert seen["value"] == [4, 3]


def test_missing_new_request_keys_are_tolerated_and_the_sandbox_holds() -> None:
    with DAG("sandbox") as d:
        BashOperator(task_id="evil", bash_command="echo {{ ''.__class__.__mro__ }}")
    result = run(d, "evil")
    assert result["state"] == TryState.FAILED and "unsafe" in result["error"].lower()


def test_dag_function_parameters_become_params_resolved_at_run_time() -> None:
    from herald import dag as dag_decorator

    @dag_decorator(schedule=None)
    def greeting(name: str = "world") -> None:
        @task
        def hello(who: str) -> str:
            return f"hello {who}"

        hello(name)

    d = greeting()
    assert d.params == {"name": "world"}
    assert run(d, "hello")["result"] == "hello world"
    assert run(d, "hello", conf={"name": "herald"})["result"] == "hello herald"


def test_connection_passwords_and_sensitive_variables_are_masked_in_the_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_DB", "postgres://user:hunter22@db:5432/x")
    monkeypatch.setenv("AIRFLOW_VAR_API_TOKEN", "tok-123456")

    def leak() -> None:
        from herald import BaseHook, Variable

        print("password is", BaseHook.get_connection("db").password, "token", Variable.get("api_token"))
        raise ValueError(f"bad {BaseHook.get_connection('db').password}")

    with DAG("masked") as d:
        PythonOperator(task_id="leak", python_callable=leak)
    result = run(d, "leak")
    assert "hunter22" not in result["log"] and "tok-123456" not in result["log"]
    assert "password is *** token ***" in result["log"] and result["error"] == "ValueError: bad ***"


def test_xcomarg_map_transforms_the_expansion() -> None:
    with DAG("map_fn") as d:

        @task
        def names() -> list[str]:
            return ["a", "b"]

        @task
        def shout(word: str) -> str:
            return word

        shout.expand(word=names().map(lambda n: n.upper() + "!"))
    assert run(d, "shout", map_index=1, upstream={"names": ["a", "b"]})["result"] == "B!"
