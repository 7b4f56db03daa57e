"""When a task runs, given how its upstream tasks ended (Airflow's trigger rules)."""

from __future__ import annotations

from enum import StrEnum


class TriggerRule(StrEnum):
    """The condition on a task's direct upstream tasks that lets it run.

    The scheduler evaluates it each time an upstream task ends: the task runs,
    keeps waiting, or is decided without running (`skipped`, `upstream_failed`).
    A task without upstream tasks runs whatever its rule.
    """

    #: every upstream task succeeded (a failed one fails it upstream, a skipped one skips it)
    ALL_SUCCESS = "all_success"
    #: every upstream task failed or was upstream_failed
    ALL_FAILED = "all_failed"
    #: every upstream task ended, however
    ALL_DONE = "all_done"
    #: every upstream task ended, none was skipped, and at least one succeeded
    ALL_DONE_MIN_ONE_SUCCESS = "all_done_min_one_success"
    #: every upstream task ended and a setup task among them succeeded (Herald has no setup tasks: all_done)
    ALL_DONE_SETUP_SUCCESS = "all_done_setup_success"
    #: as soon as one upstream task succeeded
    ONE_SUCCESS = "one_success"
    #: as soon as one upstream task failed
    ONE_FAILED = "one_failed"
    #: as soon as one upstream task succeeded or failed
    ONE_DONE = "one_done"
    #: every upstream task ended, none failed (skipped ones are fine)
    NONE_FAILED = "none_failed"
    #: none failed and at least one succeeded
    NONE_FAILED_MIN_ONE_SUCCESS = "none_failed_min_one_success"
    #: every upstream task ended, none was skipped
    NONE_SKIPPED = "none_skipped"
    #: every upstream task was skipped
    ALL_SKIPPED = "all_skipped"
    #: at once, whatever the upstream tasks do
    ALWAYS = "always"

    @classmethod
    def is_valid(cls, value: str) -> bool:
        """True when `value` names a trigger rule."""
        return value in cls.all_triggers()

    @classmethod
    def all_triggers(cls) -> set[str]:
        """Every trigger rule's value."""
        return {rule.value for rule in cls}

    def __str__(self) -> str:
        return self.value
