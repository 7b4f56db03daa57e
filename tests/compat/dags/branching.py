"""Branching: BranchPythonOperator and @task.branch, joined with none_failed_min_one_success."""

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import BranchPythonOperator
from airflow.sdk import DAG, task
from airflow.utils.trigger_rule import TriggerRule


def choose(**context):
    return "big" if context["params"]["size"] > 10 else "small"


with DAG("compat_branching", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), params={"size": 5}):
    branch = BranchPythonOperator(task_id="choose", python_callable=choose)
    big = EmptyOperator(task_id="big")
    small = EmptyOperator(task_id="small")
    after_big = EmptyOperator(task_id="after_big")
    join = EmptyOperator(task_id="join", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    strict_join = EmptyOperator(task_id="strict_join")
    branch >> [big, small]
    big >> after_big >> join
    small >> join
    [after_big, small] >> strict_join

    @task.branch
    def pick():
        return ["left"]

    @task
    def left():
        return "left ran"

    @task
    def right():
        return "right ran"

    pick() >> [left(), right()]
