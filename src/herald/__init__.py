"""Herald: event-driven workflows. DAGs of Python tasks that run the moment a message arrives.

The public API; an Airflow 3 DAG ports by changing its imports to `from herald import ...`.
Names are loaded on first use (`import herald` loads no database library and no
broker client): the table below says which module holds each.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "DAG": "herald.sdk.dag",
    "Asset": "herald.sdk.assets",
    "AssetAlias": "herald.sdk.assets",
    "AssetAll": "herald.sdk.assets",
    "AssetAny": "herald.sdk.assets",
    "AssetEvent": "herald.sdk.asset_events",
    "AssetWatcher": "herald.sdk.watcher",
    "AwaitMessageTrigger": "herald.providers.kafka",
    "BaseEventTrigger": "herald.sdk.triggers",
    "DagRun": "herald.sdk.context",
    "Dataset": "herald.sdk.assets",
    "Debounce": "herald.sdk.flow",
    "EventBatch": "herald.sdk.dag",
    "InletEventsAccessors": "herald.sdk.asset_events",
    "KafkaMessageQueueTrigger": "herald.providers.kafka",
    "Message": "herald.sdk.triggers",
    "MessageQueueTrigger": "herald.triggers.message_queue",
    "Metadata": "herald.sdk.assets",
    "Model": "herald.sdk.assets",
    "OutletEventAccessors": "herald.sdk.asset_events",
    "Publisher": "herald.sdk.triggers",
    "RedisPubSubTrigger": "herald.providers.redis",
    "SqsSensorTrigger": "herald.providers.sqs",
    "apublish": "herald.publishing",
    "asset": "herald.sdk.asset_decorators",
    "dag": "herald.sdk.dag",
    "get_current_context": "herald.sdk.context",
    "publish": "herald.publishing",
    "task": "herald.sdk.dag",
    # Airflow's timetables and Airflow-style triggers (assets and triggers, issue 12)
    "AssetAndTimeSchedule": "herald.sdk.timetables",
    "AssetOrTimeSchedule": "herald.sdk.timetables",
    "AssetTriggeredTimetable": "herald.sdk.timetables",
    "CronTriggerTimetable": "herald.sdk.timetables",
    "DeltaTriggerTimetable": "herald.sdk.timetables",
    "TriggerEvent": "herald.sdk.airflow_triggers",
    # Triggers a deferrable operator waits on, run by the triggerer (issue 16)
    "BaseTrigger": "herald.sdk.airflow_triggers",
    "TaskFailedEvent": "herald.sdk.airflow_triggers",
    "TaskSkippedEvent": "herald.sdk.airflow_triggers",
    "TaskSuccessEvent": "herald.sdk.airflow_triggers",
    "TaskDeferralError": "herald.airflow",
    "TaskDeferralTimeout": "herald.airflow",
    # Airflow's authoring names (operators, params, variables, ...), see herald.airflow
    "AirflowException": "herald.airflow",
    "AirflowFailException": "herald.airflow",
    "AirflowNotFoundException": "herald.airflow",
    "AirflowSensorTimeout": "herald.airflow",
    "AirflowSkipException": "herald.airflow",
    "AirflowTaskTimeout": "herald.airflow",
    "BaseHook": "herald.airflow",
    "BaseOperator": "herald.airflow",
    "BaseSensorOperator": "herald.airflow",
    "BashOperator": "herald.airflow",
    "BranchPythonOperator": "herald.airflow",
    "Connection": "herald.airflow",
    "Context": "herald.airflow",
    "DagNotFound": "herald.airflow",
    "DuplicateTaskIdFound": "herald.airflow",
    "EmptyOperator": "herald.airflow",
    "Label": "herald.airflow",
    "MappedOperator": "herald.airflow",
    "Param": "herald.airflow",
    "ParamValidationError": "herald.airflow",
    "ParamsDict": "herald.airflow",
    "PokeReturnValue": "herald.airflow",
    "PythonOperator": "herald.airflow",
    "PythonSensor": "herald.airflow",
    "ShortCircuitOperator": "herald.airflow",
    "TaskGroup": "herald.airflow",
    "TaskInstance": "herald.airflow",
    "TriggerDagRunOperator": "herald.airflow",
    "TriggerRule": "herald.airflow",
    "Variable": "herald.airflow",
    "XComArg": "herald.airflow",
    "chain": "herald.airflow",
    "chain_linear": "herald.airflow",
    "cross_downstream": "herald.airflow",
    "task_group": "herald.airflow",
    "timezone": "herald.airflow",
    # Waiting inside a run without a worker, windows and absence (issue 16)
    "AssetAbsence": "herald.sdk.asset_windows",
    "AssetWindow": "herald.sdk.asset_windows",
    "DateTimeSensor": "herald.airflow",
    "DateTimeSensorAsync": "herald.airflow",
    "DateTimeTrigger": "herald.airflow",
    "TimeDeltaTrigger": "herald.airflow",
    "Deferral": "herald.sdk.waits",
    "TaskDeferred": "herald.sdk.waits",
    "TimeDeltaSensor": "herald.airflow",
    "TimeDeltaSensorAsync": "herald.airflow",
    "WaitForAssetEvent": "herald.airflow",
    "wait_for_asset_event": "herald.sdk.waits",
}

__all__ = [
    "DAG",
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "AirflowTaskTimeout",
    "Asset",
    "AssetAbsence",
    "AssetAlias",
    "AssetAll",
    "AssetAndTimeSchedule",
    "AssetAny",
    "AssetEvent",
    "AssetOrTimeSchedule",
    "AssetTriggeredTimetable",
    "AssetWatcher",
    "AssetWindow",
    "AwaitMessageTrigger",
    "BaseEventTrigger",
    "BaseHook",
    "BaseOperator",
    "BaseSensorOperator",
    "BaseTrigger",
    "BashOperator",
    "BranchPythonOperator",
    "Connection",
    "Context",
    "CronTriggerTimetable",
    "DagNotFound",
    "DagRun",
    "Dataset",
    "DateTimeSensor",
    "DateTimeSensorAsync",
    "DateTimeTrigger",
    "Debounce",
    "Deferral",
    "DeltaTriggerTimetable",
    "DuplicateTaskIdFound",
    "EmptyOperator",
    "EventBatch",
    "InletEventsAccessors",
    "KafkaMessageQueueTrigger",
    "Label",
    "MappedOperator",
    "Message",
    "MessageQueueTrigger",
    "Metadata",
    "Model",
    "OutletEventAccessors",
    "Param",
    "ParamValidationError",
    "ParamsDict",
    "PokeReturnValue",
    "Publisher",
    "PythonOperator",
    "PythonSensor",
    "RedisPubSubTrigger",
    "ShortCircuitOperator",
    "SqsSensorTrigger",
    "TaskDeferralError",
    "TaskDeferralTimeout",
    "TaskDeferred",
    "TaskFailedEvent",
    "TaskGroup",
    "TaskInstance",
    "TaskSkippedEvent",
    "TaskSuccessEvent",
    "TimeDeltaSensor",
    "TimeDeltaSensorAsync",
    "TimeDeltaTrigger",
    "TriggerDagRunOperator",
    "TriggerEvent",
    "TriggerRule",
    "Variable",
    "WaitForAssetEvent",
    "XComArg",
    "__version__",
    "apublish",
    "asset",
    "chain",
    "chain_linear",
    "cross_downstream",
    "dag",
    "get_current_context",
    "publish",
    "task",
    "task_group",
    "timezone",
    "wait_for_asset_event",
]

if TYPE_CHECKING:
    from herald.airflow import (
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        AirflowSkipException,
        AirflowTaskTimeout,
        BaseHook,
        BaseOperator,
        BaseSensorOperator,
        BashOperator,
        BranchPythonOperator,
        Connection,
        Context,
        DagNotFound,
        DateTimeSensor,
        DateTimeSensorAsync,
        DateTimeTrigger,
        DuplicateTaskIdFound,
        EmptyOperator,
        Label,
        MappedOperator,
        Param,
        ParamsDict,
        ParamValidationError,
        PokeReturnValue,
        PythonOperator,
        PythonSensor,
        ShortCircuitOperator,
        TaskDeferralError,
        TaskDeferralTimeout,
        TaskGroup,
        TaskInstance,
        TimeDeltaSensor,
        TimeDeltaSensorAsync,
        TimeDeltaTrigger,
        TriggerDagRunOperator,
        TriggerRule,
        Variable,
        WaitForAssetEvent,
        XComArg,
        chain,
        chain_linear,
        cross_downstream,
        task_group,
        timezone,
    )
    from herald.providers.kafka import AwaitMessageTrigger, KafkaMessageQueueTrigger
    from herald.providers.redis import RedisPubSubTrigger
    from herald.providers.sqs import SqsSensorTrigger
    from herald.publishing import apublish, publish
    from herald.sdk.airflow_triggers import (
        BaseTrigger,
        TaskFailedEvent,
        TaskSkippedEvent,
        TaskSuccessEvent,
        TriggerEvent,
    )
    from herald.sdk.asset_decorators import asset
    from herald.sdk.asset_events import AssetEvent, InletEventsAccessors, OutletEventAccessors
    from herald.sdk.asset_windows import AssetAbsence, AssetWindow
    from herald.sdk.assets import Asset, AssetAlias, AssetAll, AssetAny, Dataset, Metadata, Model
    from herald.sdk.context import DagRun, get_current_context
    from herald.sdk.dag import DAG, EventBatch, dag, task
    from herald.sdk.flow import Debounce
    from herald.sdk.timetables import (
        AssetAndTimeSchedule,
        AssetOrTimeSchedule,
        AssetTriggeredTimetable,
        CronTriggerTimetable,
        DeltaTriggerTimetable,
    )
    from herald.sdk.triggers import BaseEventTrigger, Message, Publisher
    from herald.sdk.waits import Deferral, TaskDeferred, wait_for_asset_event
    from herald.sdk.watcher import AssetWatcher
    from herald.triggers.message_queue import MessageQueueTrigger


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'herald' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
