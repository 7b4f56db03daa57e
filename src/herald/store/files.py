"""Herald's files belong to its user alone.

The SQLite database holds every payload, task log, result, variable and token
hash; `herald.toml` may hold URLs with passwords. `HERALD_HOME` is therefore
made 0700 and the database with its -wal and -shm files 0600, whatever the
umask. Homes made before this (0755 / 0644) are tightened when a process opens
them, with one warning naming what changed; after that they are private and
nothing is logged again.

SQLite gives the -wal and -shm files the mode of the database file, so creating
the (empty, valid) database file 0600 before SQLite first opens it is enough for
all three.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

__all__ = ["PRIVATE_DIR", "PRIVATE_FILE", "private_database", "private_dir", "private_home", "tighten"]

log = logging.getLogger("herald.files")

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
#: what SQLite keeps next to a database file
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def tighten(path: Path) -> str | None:
    """Remove the group's and others' access to `path` if this user owns it; says what changed, or None."""
    try:
        info = path.stat()
    except OSError:
        return None
    if info.st_uid != os.getuid() or not info.st_mode & 0o077:
        return None
    old = stat.S_IMODE(info.st_mode)
    new = old & 0o700 if stat.S_ISDIR(info.st_mode) else old & 0o600
    try:
        path.chmod(new)
    except OSError as exc:
        log.warning("could not make %s private (mode %04o): %s", path, old, exc)
        return None
    return f"{path} {old:04o} -> {new:04o}"


def _say(changed: list[str]) -> None:
    if changed:
        log.warning("made Herald's files private to their user (they were readable by others): %s", "; ".join(changed))


def _make_dirs(path: Path) -> None:
    missing: list[Path] = []
    walk = path
    while not walk.exists() and walk != walk.parent:
        missing.append(walk)
        walk = walk.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=PRIVATE_DIR)
            folder.chmod(PRIVATE_DIR)  # mkdir's mode passes through the umask


def private_dir(path: Path) -> None:
    """Create `path` and its missing parents 0700; an existing `path` of this user loses group/other access."""
    _make_dirs(path)
    changed = tighten(path)
    _say([changed] if changed else [])


def private_database(database: Path) -> None:
    """Make the SQLite file at `database` (and its folder if missing) 0600 before SQLite opens it.

    An existing database and its -wal/-shm files lose group/other access (logged once).
    """
    if not database.parent.exists():
        private_dir(database.parent)
    with contextlib.suppress(FileExistsError):
        fd = os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        os.fchmod(fd, PRIVATE_FILE)
        os.close(fd)
    changed = [c for c in (tighten(Path(f"{database}{side}")) for side in ("", *SQLITE_SIDE_FILES)) if c]
    _say(changed)


def private_home(home: Path) -> None:
    """Create `home` 0700 (a process starting), tightening it and `herald.toml` in it if they are open to others."""
    _make_dirs(home)
    _say([c for c in (tighten(home), tighten(home / "herald.toml")) if c])
