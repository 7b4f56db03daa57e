"""The exceptions an Airflow task raises to say how its try ends."""

from __future__ import annotations


class AirflowException(Exception):
    """A task failed; it is tried again while it has retries left."""


class AirflowSkipException(AirflowException):
    """Raised in a task: the try ends in the `skipped` state."""


class AirflowFailException(AirflowException):
    """Raised in a task: the try fails and is not retried."""


class AirflowSensorTimeout(AirflowException):
    """A sensor poked for longer than its `timeout`; it fails without retries (or skips with soft_fail)."""


class AirflowNotFoundException(AirflowException):
    """A connection or variable that is not defined."""


class AirflowTaskTimeout(AirflowException):
    """A try ran longer than its `execution_timeout`."""


class TaskDeferralError(AirflowException):
    """A deferred try's trigger failed (raised, ended without an event, or could not be built); retries apply."""


class TaskDeferralTimeout(TaskDeferralError):
    """A deferred try's trigger did not fire within the deferral's `timeout`; retries apply."""


class ParamValidationError(AirflowException):
    """A run's `conf` does not satisfy the DAG's `Param` schemas."""


class DagNotFound(AirflowException):
    """TriggerDagRunOperator named a DAG that does not exist."""


class DuplicateTaskIdFound(AirflowException):
    """Two operators of one DAG have the same task id."""
