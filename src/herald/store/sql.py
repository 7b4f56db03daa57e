"""Statement shapes that keep one SQL text per statement, whatever the size of a batch.

SQLAlchemy renders `column IN (...)` with one parameter per value, and a
multi-row INSERT with one per value of each row, so a batch of 7 and one of 8
are two statements: psycopg parses each new text again (a large one is never
cached) and PostgreSQL never gets to prepare it. On PostgreSQL these pass each
list as one array parameter instead: `column = ANY(:values)` (`among`,
`member`), and `unnest(:a, :b, ...)` for the rows of a batch (`unnested`,
`arrays`): one text for every batch, parsed once by psycopg and prepared by the
server after a few executions (psycopg's `prepare_threshold`). SQLite keeps the
plain forms.

On SQLite the hot batch writes (`insert_rows`, `sqlite_values`) hand the
rows to the driver, each value through its column's own conversion: what
SQLAlchemy would store, without its building of a parameter dict per row.

`per_dialect` builds a hot statement once per kind of database and reuses it:
SQLAlchemy then skips building the statement and computing its cache key on
every call, which costs more than running it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import JSON, BindParameter, ColumnElement, Connection, Table, Text, any_, bindparam, cast, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import StatementError
from sqlalchemy.sql.selectable import CTE, Select, TableValuedAlias

T = TypeVar("T")

#: the ordinal column of `unnested` (the position of a row in its batch, from 1)
ORDINAL = "ordinal"
#: the arrays' parameters are named after their columns with this before (a parameter named as a
#: column is SQLAlchemy's own in an INSERT or an UPDATE)
_ARRAY = "each_"


def among(conn: Connection, column: ColumnElement[Any], values: Iterable[Any]) -> ColumnElement[bool]:
    """`column IN values`, as one array parameter on PostgreSQL (one statement text for any length)."""
    wanted = list(values)
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, wanted, type_=ARRAY(column.type)))
    return column.in_(wanted)


def member(dialect: str, column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """`column IN :name` for a statement built once (`per_dialect`): the list is given when it runs."""
    if dialect == "postgresql":
        return column == any_(array_param(name, column))
    return column.in_(bindparam(name, expanding=True))


def array_param(name: str, column: ColumnElement[Any]) -> BindParameter[Any]:
    """A parameter holding a list of `column`'s values (PostgreSQL)."""
    return bindparam(name, type_=ARRAY(column.type))


@dataclass(frozen=True)
class Unnested:
    """The rows of a batch as a table (`unnested`): `source` to select from, `c` its columns by name."""

    source: TableValuedAlias
    c: Mapping[str, ColumnElement[Any]]


def unnested(table: Table, names: Sequence[str]) -> Unnested:
    """`unnest(:name, ...) WITH ORDINALITY` (PostgreSQL): the rows of a batch given as one array per
    column (`arrays`), each typed as `table`'s column of that name, numbered from 1 in `ORDINAL`.

    A JSON column's values travel as their JSON text (an array parameter of JSON values would
    read a JSON list as a nested array) and are cast back.
    """
    texts = {n for n in names if isinstance(table.c[n].type, JSON)}
    source = (
        func.unnest(*(bindparam(f"{_ARRAY}{n}", type_=ARRAY(Text() if n in texts else table.c[n].type)) for n in names))
        .table_valued(*names, with_ordinality=ORDINAL)
        .render_derived()
    )
    columns: dict[str, ColumnElement[Any]] = {
        n: cast(source.c[n], table.c[n].type) if n in texts else source.c[n] for n in names
    }
    columns[ORDINAL] = source.c[ORDINAL]
    return Unnested(source, columns)


def arrays(table: Table, rows: Iterable[Mapping[str, Any]], names: Sequence[str]) -> dict[str, list[Any]]:
    """The parameters of `unnested(table, names)`: one list per column, the rows in order.

    A JSON column's values are written as JSON text (None as JSON's null, as SQLAlchemy stores it).
    """
    out: dict[str, list[Any]] = {f"{_ARRAY}{n}": [] for n in names}
    columns = [(n, out[f"{_ARRAY}{n}"], isinstance(table.c[n].type, JSON)) for n in names]
    known = set(names)
    for row in rows:
        if not known.issuperset(row):
            # a value the statement has no column for would be lost without a word (SQLite's
            # executemany would store it): a caller passing a new column must name it
            raise ValueError(f"{table.name}: no array for {sorted(set(row) - known)} among {list(names)}")
        for n, values, as_json in columns:
            value = row.get(n)
            values.append(json.dumps(value) if as_json else value)
    return out


def skip_locked(rows: Select[Any], name: str) -> CTE:
    """`rows` locked (SKIP LOCKED: rows another transaction holds are left out) as a CTE, for the
    statement that writes them to select from: one round trip to take a batch.

    Materialized: PostgreSQL may run an `IN (subquery)` again for each row it joins,
    and with SKIP LOCKED each run may pick other rows (more than the LIMIT taken at once).
    """
    return rows.with_for_update(skip_locked=True).cte(name).prefix_with("MATERIALIZED", dialect="postgresql")


def per_dialect(build: Callable[[str], T]) -> Callable[[Connection], T]:
    """`build(dialect_name)` once per kind of database, then the same statement each call."""
    built: dict[str, T] = {}

    def get(conn: Connection) -> T:
        name = conn.dialect.name
        found = built.get(name)
        if found is None:
            found = built[name] = build(name)
        return found

    get.__doc__ = build.__doc__
    return get


def sqlite_values(
    conn: Connection, table: Table, names: Sequence[str], rows: Iterable[Mapping[str, Any]]
) -> list[tuple[Any, ...]]:
    """Each row's `names` values as the driver takes them: each through its column's own conversion."""
    processors = _bind_processors(conn, table, tuple(names))
    known = set(names)
    out: list[tuple[Any, ...]] = []
    for row in rows:
        if not known.issuperset(row):  # as `arrays`: a value without its column is an error, not lost
            raise ValueError(f"{table.name}: no column for {sorted(set(row) - known)} among {list(names)}")
        # a column a row leaves out is NULL (the batch's columns are the same for every row)
        out.append(tuple(p(row.get(n)) if p is not None else row.get(n) for n, p in processors))
    return out


_processors: dict[tuple[str, str, tuple[str, ...]], list[tuple[str, Callable[[Any], Any] | None]]] = {}


def _bind_processors(
    conn: Connection, table: Table, names: tuple[str, ...]
) -> list[tuple[str, Callable[[Any], Any] | None]]:
    key = (conn.dialect.name, table.name, names)
    found = _processors.get(key)
    if found is None:
        dialect = conn.dialect
        found = _processors[key] = [(n, table.c[n].type.dialect_impl(dialect).bind_processor(dialect)) for n in names]
    return found


#: rows per multi-row INSERT of `insert_rows` (SQLite allows 32,766 parameters per statement)
_ROWS_PER_INSERT = 1000


def insert_rows(
    conn: Connection,
    table: Table,
    names: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    skip_conflicts: bool = False,
    returning: Sequence[str] = (),
) -> list[Sequence[Any]]:
    """A multi-row INSERT of `rows` (values in the order of `names`) on SQLite, run by the driver itself.

    The values are converted by their columns' types as SQLAlchemy would (a JSON
    column's value serialised, a datetime written in SQLite's format), but each
    distinct value object once per call: a batch's rows that share one `now`
    convert it once. SQLAlchemy's own executemany converts every value of every row
    through its generic parameter machinery, which cost more than the insert itself
    (a triggerer's batch of events). `skip_conflicts` adds ON CONFLICT DO NOTHING;
    returns the `returning` columns of the rows inserted.
    """
    dialect = conn.dialect
    assert dialect.name == "sqlite", "insert_rows is SQLite's (PostgreSQL takes `unnested` batches)"
    processors = [p for _, p in _bind_processors(conn, table, tuple(names))]
    converted: list[Any] = []
    last: list[tuple[Any, Any]] = [(_NOTHING, None)] * len(names)
    count = 0
    for row in rows:
        count += 1
        for i, value in enumerate(row):
            process = processors[i]
            if process is None:
                converted.append(value)
                continue
            seen, out = last[i]
            if value is not seen:
                try:
                    out = process(value)
                except Exception as exc:  # refused for what it carries, as SQLAlchemy reports it
                    raise StatementError(
                        f"({type(exc).__name__}) {exc}", f"INSERT INTO {table.name}", None, exc
                    ) from exc
                last[i] = (value, out)
            converted.append(out)
    if not count:
        return []
    quote = dialect.identifier_preparer.quote
    head = (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({', '.join(quote(n) for n in names)}) VALUES "
    )
    one = "(" + ", ".join("?" * len(names)) + ")"
    tail = " ON CONFLICT DO NOTHING" if skip_conflicts else ""
    if returning:
        tail += " RETURNING " + ", ".join(quote(n) for n in returning)
    width = len(names)
    found: list[Sequence[Any]] = []
    for start in range(0, count, _ROWS_PER_INSERT):
        n = min(_ROWS_PER_INSERT, count - start)
        params = tuple(converted[start * width : (start + n) * width])
        result = conn.exec_driver_sql(head + ", ".join([one] * n) + tail, params)
        if returning:
            found.extend(result.all())
    return found


_NOTHING = object()
