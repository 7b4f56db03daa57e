"""`TriggerDagRunOperator`: start a run of another DAG, and optionally wait for it to finish."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

from herald.airflow import dagruns
from herald.airflow.baseoperator import BaseOperator
from herald.airflow.exceptions import AirflowException, DagNotFound
from herald.store.states import RunState

__all__ = ["TriggerDagRunOperator"]


class TriggerDagRunOperator(BaseOperator):
    """Trigger a run of `trigger_dag_id` with `conf`; the new run id is pushed as XCom `trigger_run_id`.

    Args:
        trigger_dag_id: the DAG to run (templated).
        conf: the run's conf (templated).
        wait_for_completion: wait until the run ends; a run ending in `failed_states` fails the task.
        poke_interval: seconds between checks while waiting.
        allowed_states, failed_states: final run states counted as success and failure.
        trigger_run_id, logical_date, reset_dag_run: not supported (Herald names its runs,
            manual runs have no logical date); setting them is an import error.
        deferrable: accepted; the wait happens in the worker.
    """

    template_fields: ClassVar[Sequence[str]] = ("trigger_dag_id", "conf", "wait_for_completion")
    template_fields_renderers: ClassVar[dict[str, str]] = {"conf": "py"}
    ui_color: ClassVar[str] = "#ffefeb"

    def __init__(
        self,
        *,
        trigger_dag_id: str,
        trigger_run_id: str | None = None,
        conf: dict[str, Any] | None = None,
        logical_date: Any = None,
        reset_dag_run: bool = False,
        wait_for_completion: bool = False,
        poke_interval: float = 60,
        allowed_states: Sequence[str] | None = None,
        failed_states: Sequence[str] | None = None,
        skip_when_already_exists: bool = False,
        deferrable: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for name, value, why in (
            (
                "trigger_run_id",
                trigger_run_id,
                "Herald names the runs it creates; read the id from XCom 'trigger_run_id'",
            ),
            ("logical_date", logical_date, "manual runs have no logical date in Herald"),
            ("reset_dag_run", reset_dag_run, "runs are never cleared and re-run by id in Herald"),
            ("skip_when_already_exists", skip_when_already_exists, "every trigger creates a new run in Herald"),
        ):
            if value:
                raise ValueError(f"task {self.task_id!r}: TriggerDagRunOperator({name}=...) is not supported: {why}")
        self.trigger_dag_id = trigger_dag_id
        self.conf = conf
        self.wait_for_completion = wait_for_completion
        self.poke_interval = float(poke_interval)
        self.allowed_states = [str(s) for s in (allowed_states or [RunState.SUCCESS])]
        self.failed_states = [str(s) for s in (failed_states or [RunState.FAILED])]
        self.deferrable = deferrable

    def execute(self, context: dict[str, Any]) -> None:
        """Trigger the run; wait for it when asked."""
        conf = dict(self.conf or {})
        if not dagruns.dag_exists(self.trigger_dag_id):
            raise DagNotFound(f"Dag id {self.trigger_dag_id} not found")
        run_id = dagruns.trigger(self.trigger_dag_id, conf)
        print(f"Triggered DAG {self.trigger_dag_id}: run {run_id}")
        context["ti"].xcom_push("trigger_run_id", run_id)
        if not self.wait_for_completion:
            return None
        while True:
            state = dagruns.run_state(run_id)
            print(f"Waiting for {self.trigger_dag_id} run {run_id}: {state}")
            if state in self.failed_states:
                raise AirflowException(f"{self.trigger_dag_id} failed with failed states {state}")
            if state in self.allowed_states:
                print(f"{self.trigger_dag_id} finished with allowed state {state}")
                return None
            time.sleep(self.poke_interval)
