"""More TaskFlow: @task.bash, @dag parameters as params, a BaseSensorOperator subclass, timezone, chain."""

from airflow.sdk import BaseSensorOperator, chain, dag, task
from airflow.utils import timezone


class CountdownSensor(BaseSensorOperator):
    template_fields = ("start",)

    def __init__(self, start, **kwargs):
        super().__init__(**kwargs)
        self.start = start
        self.pokes = 0

    def poke(self, context):
        self.pokes += 1
        print(f"poke {self.pokes} of {self.start}")
        return self.pokes >= int(self.start)


@dag(schedule=None, start_date=timezone.datetime(2024, 1, 1), catchup=False, tags=["compat"])
def compat_taskflow_more(greeting: str = "hello"):
    @task.bash(env={"GREETING": "{{ params.greeting }}"}, append_env=True)
    def say(name):
        return f'echo "$GREETING {name} from {{{{ dag.dag_id }}}}"'

    @task
    def echo(word, **context):
        return {"word": word, "params": context["params"]}

    countdown = CountdownSensor(task_id="countdown", start="{{ 1 + 2 }}", poke_interval=0.1, timeout=30)
    chain(say("herald"), countdown, echo(greeting))


compat_taskflow_more()
