"""Mapping over XCom: expand_kwargs from a task, zero-length expansion, xcom_pull of a mapped task, map_index."""

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, task

with DAG("compat_mapping_xcom", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):

    @task
    def files():
        return [{"name": "a.csv", "rows": 2}, {"name": "b.csv", "rows": 5}, {"name": "c.csv", "rows": 1}]

    @task
    def load(name, rows, **context):
        return {"name": name, "rows": rows, "map_index": context["ti"].map_index}

    @task
    def nothing():
        return []

    @task
    def never(x):
        return x

    @task
    def after_never(values):
        return values

    @task
    def sizes(loaded):
        return [item["rows"] for item in loaded]

    def pull(ti):
        return ti.xcom_pull(task_ids="load")

    loaded = load.expand_kwargs(files())
    sizes(loaded)
    after_never(never.expand(x=nothing()))
    PythonOperator(task_id="pulled", python_callable=pull) << loaded

    @task
    def many():
        return list(range(6))

    @task
    def each(x):
        return x

    each.expand(x=many())
