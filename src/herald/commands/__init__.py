"""The writes the API and the CLI share, one module per entity.

Each command takes the metadata database's `Engine` and plain arguments, runs
in one transaction of its own, and raises a `CommandError` (`NotFound`,
`Conflict`, `Invalid`) with a message and a hint a person can act on. The
faces only translate those errors: the API into 404 / 409 / 422 bodies, the CLI
into a message and an exit status. Waking other processes (the scheduler, the
triggerer) after the commit is the face's part, since each face knows how.

What would violate this: a face building SQL, or a command printing, exiting or
raising an HTTP error.
"""

from herald.commands.errors import CommandError, Conflict, Invalid, NotFound

__all__ = ["CommandError", "Conflict", "Invalid", "NotFound"]
