"""The pilot door: every pilot status change goes through :func:`change_pilots`.

Pilots plug into the generic door (:mod:`ctaprod.logic.door`): rows read under lock (``FOR
UPDATE`` on MariaDB/PostgreSQL; SQLite write transactions are serialized), each step checked
by ``PILOT_MACHINE`` from the state read, written with an UPDATE conditional on that state,
the hooks of ``PILOT_MACHINE`` applied (``known_again``: any change clears the "unknown to the
CE since" time), and a write that matched nothing reported as missed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping

from ctaprod.core.errors import Conflict
from ctaprod.core.pilot_states import PILOT_MACHINE, PilotStatus
from ctaprod.core.statemachine import Change, Transition, TransitionResult
from ctaprod.db.statechange import ConditionalWriter, StatusWrite
from ctaprod.db.tables import pilots
from ctaprod.logic.context import Context
from ctaprod.logic.door import Door, change_states

REASON_WIDTH = 255  # pilots.status_reason
_writer = ConditionalWriter(pilots, "pilot_id", reason="status_reason")

PilotResult = TransitionResult[PilotStatus, RowMapping]


def pilot_change(target: PilotStatus, reason: str, **values: Any) -> Change[PilotStatus]:
    """A requested pilot step (the reason is cut to the column's width)."""
    return Change(target, reason[:REASON_WIDTH], values or None)


def _door(ctx: Context) -> Door[PilotStatus, RowMapping]:
    def read(conn: Connection, ids: Sequence[int]) -> Mapping[int, RowMapping]:
        return ctx.pilots.read_locked(conn, ids)

    def write(
        conn: Connection, steps: Sequence[Transition[PilotStatus]], now: datetime
    ) -> set[int]:
        return _writer.apply(
            conn,
            [StatusWrite(t.ident, t.old.value, t.new.value, t.reason, t.values) for t in steps],
            now,
        )

    return Door(
        PILOT_MACHINE,
        read=read,
        status=lambda row: PilotStatus(row["status"]),
        write=write,
        before={"known_again": lambda t, now: {"unknown_since": None}},
    )


def change_pilots(
    ctx: Context,
    conn: Connection,
    ids: Sequence[int],
    decide: Callable[[RowMapping], Sequence[Change[PilotStatus]] | None],
    *,
    source: str,
    now: datetime | None = None,
    strict: bool = False,
    known: Mapping[int, RowMapping] | None = None,
) -> PilotResult:
    """Apply ``decide(row)`` to the pilots ``ids`` in the caller's write transaction; what
    was applied, rejected (with the reason) and missed (changed meanwhile)."""
    return change_states(
        _door(ctx),
        conn,
        ids,
        decide,
        source=source,
        now=now or ctx.clock(),
        strict=strict,
        known=known,
    )


def change_one_pilot(
    ctx: Context,
    conn: Connection,
    pilot_id: int,
    step: Change[PilotStatus],
    *,
    source: str,
    now: datetime | None = None,
) -> None:
    """One pilot to ``step`` (locked read, checked): raises NotFound / InvalidTransition
    when refused, Conflict when it changed between the read and the write."""
    result = change_pilots(
        ctx, conn, [pilot_id], lambda row: [step], source=source, now=now, strict=True
    )
    if result.missed:
        raise Conflict(f"pilot {pilot_id} changed meanwhile; try again")
