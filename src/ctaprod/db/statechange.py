"""Conditional status writes in bulk, for any entity table with an integer key and a status.

One checked change per row: ``SET status = :new, <reason>, <stamp>, <values...> WHERE
status = :old`` and the row's key. Rows whose changes are identical (same old and new status,
reason and values: a bulk kill, a reschedule, a submission) share one ``UPDATE ... WHERE key
IN (...)`` when they are many (``MIN_LIST``); the others share one executemany UPDATE per set
of columns. So a batch costs a
number of statements fixed by its distinct contents, not by its size, and on drivers whose
executemany is a loop of round trips (PyMySQL for UPDATE) the common bulk case is one round
trip. The rows whose UPDATE matched nothing (the entity left ``old`` meanwhile) are returned,
never dropped silently.

Which rows matched is known exactly: a one-row UPDATE's row count says it; a many-row UPDATE
runs inside a savepoint and, in the rare case its row count falls short, is rolled back to it
and replayed one row at a time. (Looking at the rows afterwards could not tell a row we moved
from one another transaction moved to the same target.)
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Connection, Table, Update, bindparam, update

from ctaprod.core.statemachine import Transition

# Keys per IN list: any bulk call (up to 10,000 items) in one statement, within every engine's
# bind-parameter limit (SQLite >= 3.32: 32,766).
IN_CHUNK = 10_000
# Identical changes of at least this many rows share one UPDATE ... IN; fewer go row by row
# (executemany).
MIN_LIST = 20


@dataclass(frozen=True)
class StatusWrite:
    """One checked change of one row: ``old -> new`` with its reason and other columns."""

    ident: int
    old: str
    new: str
    reason: str = ""
    values: Mapping[str, Any] | None = None


class ConditionalWriter:
    """Applies :class:`StatusWrite` batches to ``table`` (statements are built once per
    column set and reused)."""

    def __init__(
        self,
        table: Table,
        key: str,
        status: str = "status",
        reason: str | None = None,
        stamp: str | None = "last_update",
    ) -> None:
        self.table = table
        self.key: Column[Any] = table.c[key]
        self.status: Column[Any] = table.c[status]
        self.reason = reason
        self.stamp = stamp
        self._by_row: dict[tuple[str, ...], Update] = {}
        self._by_list: dict[tuple[str, ...], Update] = {}

    def _values(self, keys: tuple[str, ...]) -> dict[str, Any]:
        values: dict[str, Any] = {self.status.name: bindparam("w_new")}
        if self.reason is not None:
            values[self.reason] = bindparam("w_reason")
        if self.stamp is not None:
            values[self.stamp] = bindparam("w_now")
        for k in keys:  # a change's own columns may override the reason or the stamp
            values[k] = bindparam(f"v_{k}")
        return values

    def _row_statement(self, keys: tuple[str, ...]) -> Update:
        stmt = self._by_row.get(keys)
        if stmt is None:
            stmt = self._by_row[keys] = (
                update(self.table)
                .where(self.key == bindparam("w_id"), self.status == bindparam("w_old"))
                .values(**self._values(keys))
            )
        return stmt

    def _list_statement(self, keys: tuple[str, ...]) -> Update:
        stmt = self._by_list.get(keys)
        if stmt is None:
            stmt = self._by_list[keys] = (
                update(self.table)
                .where(
                    self.key.in_(bindparam("w_ids", expanding=True)),
                    self.status == bindparam("w_old"),
                )
                .values(**self._values(keys))
            )
        return stmt

    def apply(self, conn: Connection, writes: Sequence[StatusWrite], now: datetime) -> set[int]:
        """Write one change per row (at most one per row); return the IDs whose UPDATE matched
        nothing."""
        same: dict[Hashable, list[StatusWrite]] = {}
        for w in writes:
            same.setdefault(_content(w), []).append(w)
        by_columns: dict[tuple[str, ...], list[StatusWrite]] = {}
        missed: set[int] = set()
        for content, group in same.items():
            # Small groups (one task's files, each group with its own task id) go row by row
            # in one executemany: one savepointed UPDATE ... IN per group would cost a
            # statement and a savepoint for every few rows.
            if content is None or len(group) < MIN_LIST:
                for w in group:
                    by_columns.setdefault(_keys(w), []).append(w)
                continue
            for i in range(0, len(group), IN_CHUNK):
                missed |= self._apply_list(conn, group[i : i + IN_CHUNK], now)
        for keys, group in by_columns.items():
            missed |= self._apply_rows(conn, keys, group, now)
        return missed

    def write_transitions(
        self, conn: Connection, steps: Sequence[Transition[Any]], now: datetime
    ) -> set[int]:
        """:meth:`apply` to a door's checked transitions (a ``Door``'s ``write``)."""
        return self.apply(
            conn,
            [StatusWrite(t.ident, t.old.value, t.new.value, t.reason, t.values) for t in steps],
            now,
        )

    def _params(self, w: StatusWrite, now: datetime) -> dict[str, Any]:
        return {
            "w_id": w.ident,
            "w_old": w.old,
            "w_new": w.new,
            "w_reason": w.reason,
            "w_now": now,
            **{f"v_{k}": v for k, v in (w.values or {}).items()},
        }

    def _apply_list(
        self, conn: Connection, group: Sequence[StatusWrite], now: datetime
    ) -> set[int]:
        """Identical changes of many rows: one UPDATE ... IN (...)."""
        first = group[0]
        params = self._params(first, now)
        del params["w_id"]
        params["w_ids"] = [w.ident for w in group]
        savepoint = conn.begin_nested()
        if conn.execute(self._list_statement(_keys(first)), params).rowcount == len(group):
            savepoint.commit()
            return set()
        savepoint.rollback()
        return self._one_by_one(conn, _keys(first), group, now)

    def _apply_rows(
        self, conn: Connection, keys: tuple[str, ...], group: Sequence[StatusWrite], now: datetime
    ) -> set[int]:
        """Changes that differ, with the same columns: one executemany."""
        if len(group) == 1:
            return self._one_by_one(conn, keys, group, now)
        savepoint = conn.begin_nested()
        rows = [self._params(w, now) for w in group]
        if conn.execute(self._row_statement(keys), rows).rowcount == len(rows):
            savepoint.commit()
            return set()
        savepoint.rollback()
        return self._one_by_one(conn, keys, group, now)

    def _one_by_one(
        self, conn: Connection, keys: tuple[str, ...], group: Sequence[StatusWrite], now: datetime
    ) -> set[int]:
        stmt = self._row_statement(keys)
        return {w.ident for w in group if conn.execute(stmt, self._params(w, now)).rowcount != 1}


def _keys(w: StatusWrite) -> tuple[str, ...]:
    return tuple(sorted(w.values)) if w.values else ()


def _content(w: StatusWrite) -> Hashable | None:
    """What makes two changes identical but for the row; None if a value is not hashable."""
    values = tuple(sorted((w.values or {}).items()))
    try:
        hash(values)
    except TypeError:
        return None
    return (w.old, w.new, w.reason, values)
