"""Airflow's authoring API on Herald: operators, TaskFlow variants, params, variables, connections.

An Airflow 3 DAG ports by rewriting `from airflow... import X` to `from herald import X`
(`herald port` does it for a folder); every name below is importable from `herald`.
"""

from __future__ import annotations

from herald.airflow import timezone
from herald.airflow.baseoperator import BaseOperator, MappedOperator, chain, chain_linear, cross_downstream
from herald.airflow.bash import BashOperator
from herald.airflow.connections import BaseHook, Connection
from herald.airflow.edges import Label
from herald.airflow.empty import EmptyOperator
from herald.airflow.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowNotFoundException,
    AirflowSensorTimeout,
    AirflowSkipException,
    AirflowTaskTimeout,
    DagNotFound,
    DuplicateTaskIdFound,
    ParamValidationError,
    TaskDeferralError,
    TaskDeferralTimeout,
)
from herald.airflow.params import Param, ParamsDict
from herald.airflow.python import BranchPythonOperator, PythonOperator, ShortCircuitOperator
from herald.airflow.runtime import PokeReturnValue, TaskInstance
from herald.airflow.sensors import BaseSensorOperator, PythonSensor
from herald.airflow.taskgroup import TaskGroup, task_group
from herald.airflow.temporal import DateTimeTrigger, TimeDeltaTrigger
from herald.airflow.trigger_dagrun import TriggerDagRunOperator
from herald.airflow.variables import Variable
from herald.airflow.waits import (
    DateTimeSensor,
    DateTimeSensorAsync,
    TimeDeltaSensor,
    TimeDeltaSensorAsync,
    WaitForAssetEvent,
)
from herald.sdk.context import Context, get_current_context
from herald.sdk.dag import XComArg
from herald.sdk.trigger_rule import TriggerRule

__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "AirflowTaskTimeout",
    "BaseHook",
    "BaseOperator",
    "BaseSensorOperator",
    "BashOperator",
    "BranchPythonOperator",
    "Connection",
    "Context",
    "DagNotFound",
    "DateTimeSensor",
    "DateTimeSensorAsync",
    "DateTimeTrigger",
    "DuplicateTaskIdFound",
    "EmptyOperator",
    "Label",
    "MappedOperator",
    "Param",
    "ParamValidationError",
    "ParamsDict",
    "PokeReturnValue",
    "PythonOperator",
    "PythonSensor",
    "ShortCircuitOperator",
    "TaskDeferralError",
    "TaskDeferralTimeout",
    "TaskGroup",
    "TaskInstance",
    "TimeDeltaSensor",
    "TimeDeltaSensorAsync",
    "TimeDeltaTrigger",
    "TriggerDagRunOperator",
    "TriggerRule",
    "Variable",
    "WaitForAssetEvent",
    "XComArg",
    "chain",
    "chain_linear",
    "cross_downstream",
    "get_current_context",
    "task_group",
    "timezone",
]
