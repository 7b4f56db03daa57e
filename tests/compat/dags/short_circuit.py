"""ShortCircuitOperator and @task.short_circuit, with and without ignore_downstream_trigger_rules."""

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.sdk import DAG, task

with DAG("compat_short_circuit", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    gate = ShortCircuitOperator(task_id="gate", python_callable=lambda: False)
    gate >> EmptyOperator(task_id="skipped_1") >> EmptyOperator(task_id="skipped_2")

    soft = ShortCircuitOperator(task_id="soft_gate", python_callable=lambda: [], ignore_downstream_trigger_rules=False)
    direct = EmptyOperator(task_id="direct")
    always = EmptyOperator(task_id="always_after", trigger_rule="all_done")
    soft >> direct >> always

    @task.short_circuit
    def open_gate():
        return True

    @task
    def runs():
        return "ran"

    open_gate() >> runs()
