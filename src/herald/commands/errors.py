"""The typed errors of the commands layer; each face translates them its own way."""

from __future__ import annotations


class CommandError(Exception):
    """A command refused: what is wrong (`message`) and what to do about it (`hint`)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class NotFound(CommandError):
    """The object the command names does not exist (API 404, CLI exit 2: the argument names nothing)."""


class Conflict(CommandError):
    """The object is not in a state that allows the command (API 409, CLI exit 1)."""


class Invalid(CommandError):
    """An argument is wrong in itself, whatever the database holds (API 422, CLI exit 2)."""
