"""Task groups, chain, cross_downstream and labels."""

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Label, TaskGroup, chain, cross_downstream, task, task_group

with DAG("compat_groups", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
    begin = EmptyOperator(task_id="begin")

    with TaskGroup("extract", default_args={"retries": 2}) as extract:

        @task
        def one():
            return 1

        @task
        def two():
            return 2

        one() >> two()

    @task_group
    def load():
        @task
        def save(**context):
            return context["ti"].task_id

        return save()

    a = EmptyOperator(task_id="a")
    b = EmptyOperator(task_id="b")
    end = EmptyOperator(task_id="end")
    chain(begin, extract, load(), [a, b])
    cross_downstream([a, b], [end])
    begin >> Label("direct") >> end
