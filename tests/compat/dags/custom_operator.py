"""A BaseOperator subclass with template_fields, and a DAG that triggers another and waits."""

import pendulum
from airflow.models.baseoperator import BaseOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG


class GreetOperator(BaseOperator):
    template_fields = ("name",)

    def __init__(self, name, **kwargs):
        super().__init__(**kwargs)
        self.name = name

    def execute(self, context):
        message = f"Hello {self.name} from {context['dag'].dag_id}"
        print(message)
        return message


with DAG("compat_custom", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
    GreetOperator(task_id="greet", name="{{ dag_run.conf.get('name', 'nobody') }}")

with DAG("compat_controller", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as controller:
    TriggerDagRunOperator(
        task_id="trigger",
        trigger_dag_id="compat_custom",
        conf={"name": "{{ run_id }}"},
        wait_for_completion=True,
        poke_interval=0.5,
    )
