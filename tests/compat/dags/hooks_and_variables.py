"""Variables and connections from an Airflow deployment's environment, in code and templates."""

import pendulum
from airflow.hooks.base import BaseHook
from airflow.models import Variable
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, task

with DAG("compat_hooks", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:

    @task
    def read():
        conn = BaseHook.get_connection("warehouse")
        return {
            "threshold": Variable.get("threshold", deserialize_json=True),
            "host": conn.host,
            "port": conn.port,
            "login": conn.login,
        }

    templated = BashOperator(
        task_id="templated", bash_command="echo {{ var.value.region }}-{{ conn.warehouse.schema }}"
    )
    read() >> templated
