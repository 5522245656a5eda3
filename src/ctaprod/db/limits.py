"""Values checked against their column before the database sees them.

Every INSERT and UPDATE on a table of ``tables.py`` passes here (an engine event): a string
longer than its ``String(n)`` column, or an integer out of its column's range, is refused
with :class:`InvalidInput` naming the column. The three engines would otherwise answer
differently (SQLite stores it, MariaDB truncates or refuses, PostgreSQL refuses with an
error that would surface as a server error); here the answer is the same everywhere, and it
holds for every table by construction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import BigInteger, Integer, SmallInteger, String, Table
from sqlalchemy.sql.dml import Insert, Update, ValuesBase
from sqlalchemy.sql.elements import BindParameter

from ctaprod.core.errors import InvalidInput

_RANGES = {
    SmallInteger: (-(2**15), 2**15 - 1),
    BigInteger: (-(2**63), 2**63 - 1),
    Integer: (-(2**31), 2**31 - 1),
}
Limit = tuple[int | None, tuple[int, int] | None]  # (max characters, integer range)


@cache
def _limits(table: Table) -> dict[str, Limit]:
    out: dict[str, Limit] = {}
    for column in table.columns:
        kind = column.type
        if isinstance(kind, String) and kind.length:
            out[column.key] = (kind.length, None)
        elif isinstance(kind, Integer):
            bounds = next(r for t, r in _RANGES.items() if isinstance(kind, t))
            out[column.key] = (None, bounds)
    return out


def _check(table: Table, limits: dict[str, Limit], key: Any, value: Any) -> None:
    name = getattr(key, "key", key)
    limit = limits.get(name) if isinstance(name, str) else None
    if limit is None or value is None:
        return
    if isinstance(value, BindParameter):
        value = value.value
    length, bounds = limit
    if length is not None and isinstance(value, str) and len(value) > length:
        raise InvalidInput(
            f"{name}: at most {length} characters, got {len(value)}",
            field=name,
            max_length=length,
        )
    if (
        bounds is not None
        and isinstance(value, int)
        and not isinstance(value, bool)
        and not bounds[0] <= value <= bounds[1]
    ):
        raise InvalidInput(
            f"{name}: {str(value)[:30]} is out of range ({bounds[0]}..{bounds[1]})",
            field=name,
        )


def check_statement(
    statement: Any, params: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None
) -> None:
    """Raise InvalidInput when an INSERT/UPDATE would store a value its column cannot hold."""
    if not isinstance(statement, Insert | Update):
        return
    table = statement.table
    if not isinstance(table, Table):
        return
    limits = _limits(table)
    if not limits:
        return
    rows: list[Mapping[Any, Any]] = []
    if isinstance(params, Mapping):
        rows.append(params)
    elif params:
        rows.extend(p for p in params if isinstance(p, Mapping))
    assert isinstance(statement, ValuesBase)
    values = getattr(statement, "_values", None)
    if values:
        rows.append(values)
    for multi in getattr(statement, "_multi_values", ()) or ():
        for row in multi:
            if isinstance(row, Mapping):
                rows.append(row)
    for row in rows:
        for key, value in row.items():
            _check(table, limits, key, value)


def before_execute(
    _conn: Any, statement: Any, multiparams: Any, params: Any, _options: Any
) -> None:
    """The engine event (``before_execute``) calling :func:`check_statement`."""
    if multiparams:
        check_statement(statement, multiparams)
    check_statement(statement, params or None)
