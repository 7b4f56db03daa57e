"""Herald: event-driven workflows. DAGs of Python tasks that run the moment a message arrives.

The public API; an Airflow 3 DAG ports by changing its imports to `from herald import ...`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from herald.publishing import apublish, publish
from herald.sdk.assets import Asset, AssetAll, AssetAny
from herald.sdk.context import AssetEvent, DagRun, get_current_context
from herald.sdk.dag import DAG, EventBatch, dag, task
from herald.sdk.watcher import AssetWatcher
from herald.triggers.base import BaseEventTrigger, Message
from herald.triggers.message_queue import MessageQueueTrigger

__all__ = [
    "DAG",
    "Asset",
    "AssetAll",
    "AssetAny",
    "AssetEvent",
    "AssetWatcher",
    "BaseEventTrigger",
    "DagRun",
    "EventBatch",
    "Message",
    "MessageQueueTrigger",
    "__version__",
    "apublish",
    "dag",
    "get_current_context",
    "publish",
    "task",
]
