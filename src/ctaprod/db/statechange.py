"""Conditional status writes in bulk, for any entity table with an integer key and a status.

One checked step per row: ``UPDATE t SET status = :new, <reason>, <stamp>, <values...>
WHERE id = :id AND status = :old``. Steps that set the same columns share one executemany
UPDATE, so a batch costs a fixed number of statements per distinct column set, whatever its
size. The rows whose UPDATE matched nothing (the entity left ``old`` meanwhile) are returned,
never dropped silently.

Which rows matched is known exactly: a one-row UPDATE's row count says it; a many-row
executemany runs inside a savepoint and, in the rare case its total row count falls short,
is rolled back to it and replayed one row at a time. (Looking at the rows afterwards could
not tell a row we moved from one another transaction moved to the same target.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Connection, Table, Update, bindparam, update


@dataclass(frozen=True)
class StatusWrite:
    """One checked step of one row: ``old -> new`` with its reason and other columns."""

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
        self._statements: dict[tuple[str, ...], Update] = {}

    def _statement(self, keys: tuple[str, ...]) -> Update:
        stmt = self._statements.get(keys)
        if stmt is None:
            values: dict[str, Any] = {self.status.name: bindparam("w_new")}
            if self.reason is not None:
                values[self.reason] = bindparam("w_reason")
            if self.stamp is not None:
                values[self.stamp] = bindparam("w_now")
            for k in keys:  # a step's own columns may override the reason or the stamp
                values[k] = bindparam(f"v_{k}")
            stmt = (
                update(self.table)
                .where(self.key == bindparam("w_id"), self.status == bindparam("w_old"))
                .values(**values)
            )
            self._statements[keys] = stmt
        return stmt

    def apply(self, conn: Connection, writes: Sequence[StatusWrite], now: datetime) -> set[int]:
        """Write one step per row (at most one per row: a chain is applied step by step, one
        call per step); return the IDs whose UPDATE matched nothing."""
        groups: dict[tuple[str, ...], list[StatusWrite]] = {}
        for w in writes:
            groups.setdefault(tuple(sorted(w.values)) if w.values else (), []).append(w)
        missed: set[int] = set()
        for keys, group in groups.items():
            rows = [
                {
                    "w_id": w.ident,
                    "w_old": w.old,
                    "w_new": w.new,
                    "w_reason": w.reason,
                    "w_now": now,
                    **{f"v_{k}": v for k, v in (w.values or {}).items()},
                }
                for w in group
            ]
            stmt = self._statement(keys)
            if len(rows) == 1:
                if conn.execute(stmt, rows[0]).rowcount != 1:
                    missed.add(group[0].ident)
                continue
            savepoint = conn.begin_nested()
            if conn.execute(stmt, rows).rowcount == len(rows):
                savepoint.commit()
                continue
            savepoint.rollback()
            for w, row in zip(group, rows, strict=True):
                if conn.execute(stmt, row).rowcount != 1:
                    missed.add(w.ident)
        return missed
