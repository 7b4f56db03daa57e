"""`herald status`: which Herald this shell talks to (home, database, DAGs folder), creating nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from herald.cli.common import OutputOpt, missing_database, settings
from herald.cli.output import Output, console


def _config_file(home: Path) -> str | None:
    for candidate in (home / "herald.toml", Path("herald.toml")):
        if candidate.is_file():
            return str(candidate.resolve())
    return None


def _database(db_url: str) -> dict[str, Any]:
    """Where the database is and what state it is in, read without creating or migrating it."""
    from sqlalchemy.engine import make_url

    shown = make_url(db_url).render_as_string(hide_password=True)
    if missing_database(db_url) is not None:
        return {"url": shown, "state": "missing", "hint": "herald standalone or herald db migrate creates it"}
    from herald.store.db import make_engine
    from herald.store.migrate import is_current

    try:
        engine = make_engine(db_url, pool_size=0)
        try:
            current = is_current(engine)
        finally:
            engine.dispose()
    except Exception as exc:  # unreachable, wrong password, not a database...: say so, no traceback
        return {"url": shown, "state": "unreachable", "error": f"{type(exc).__name__}: {exc}"}
    return {"url": shown, "state": "ready" if current else "needs migration (herald db migrate)"}


def status(output: OutputOpt = Output.table) -> None:
    """Show which home, database and DAGs folder Herald uses here (and creates none of them)."""
    from herald import __version__

    found = settings()
    dags = found.dags_path
    info: dict[str, Any] = {
        "version": __version__,
        "home": str(found.home),
        "config_file": _config_file(found.home),
        "database": _database(found.db_url),
        "dags_folder": str(dags),
        "dag_files": len(list(dags.rglob("*.py"))) if dags.is_dir() else None,
        "executor": found.executor,
    }
    if output == Output.json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return
    database = info["database"]
    lines = [
        f"Herald {__version__}",
        f"home:        {info['home']}",
        f"config file: {info['config_file'] or 'none (environment and defaults)'}",
        f"database:    {database['url']} ({database['state']})",
        f"dags folder: {dags}"
        + (f" ({info['dag_files']} Python file(s))" if info["dag_files"] is not None else " (does not exist)"),
        f"executor:    {found.executor}",
    ]
    if "hint" in database:
        lines.append(f"hint:        {database['hint']}")
    if "error" in database:
        lines.append(f"error:       {database['error']}")
    console.print("\n".join(lines), highlight=False, markup=False)
