"""Dynamic task mapping: expand over an upstream result, partial + expand, expand_kwargs, classic operators."""

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, task

with DAG("compat_mapping", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):

    @task
    def numbers():
        return [1, 2, 3]

    @task
    def add(x, y):
        return x + y

    @task
    def total(values):
        return sum(values)

    added = add.partial(y=10).expand(x=numbers())
    total(added)

    @task
    def pair(a, b):
        return f"{a}-{b}"

    pair.expand_kwargs([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}])
    BashOperator.partial(task_id="echo").expand(bash_command=["echo one", "echo two"])
