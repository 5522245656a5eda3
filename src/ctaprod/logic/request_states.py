"""The doors of requests, their operations and their files: every status change of these
goes through :func:`change_requests`, :func:`change_operations` or :func:`change_files`.

Each plugs into the generic door (:mod:`ctaprod.logic.door`): rows read under lock (``FOR
UPDATE`` on MariaDB/PostgreSQL; SQLite write transactions are serialized) unless the caller
passes the rows it has just read under the same lock, each step checked by the entity's
machine from the state read, written with an UPDATE conditional on that state (one per
column set for the batch), the machine's hooks applied (``end_lease``: a request leaving
Assigned is held by nobody), and a write that matched nothing reported as missed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import Connection, RowMapping, Table

from ctaprod.core.requests import (
    FILE_MACHINE,
    OPERATION_MACHINE,
    REQUEST_MACHINE,
    FileStatus,
    OperationStatus,
    RequestStatus,
)
from ctaprod.core.statemachine import Change, StateMachine, Transition, TransitionResult
from ctaprod.db.statechange import ConditionalWriter, StatusWrite
from ctaprod.db.tables import request_files, request_operations, requests
from ctaprod.logic.context import Context
from ctaprod.logic.door import AfterHook, BeforeHook, Door, change_states
from ctaprod.logic.trans_tasks import mirror_requests

S = TypeVar("S", bound=StrEnum)
Rows = Mapping[int, RowMapping]
Decide = Callable[[RowMapping], Sequence[Change[S]] | None]

# The error column is written only when a step says so (in its values): a claim keeps the
# last error visible while the request is tried again.
_WRITERS = {
    "request": ConditionalWriter(requests, "request_id"),
    "operation": ConditionalWriter(request_operations, "op_id"),
    "request file": ConditionalWriter(request_files, "id", stamp=None),
}


def _door(
    machine: StateMachine[S],
    kind: type[S],
    read: Callable[[Connection, Sequence[int]], Rows],
    table: Table,
    before: Mapping[str, BeforeHook[S]] | None = None,
    after: Mapping[str, AfterHook[S, RowMapping]] | None = None,
) -> Door[S, RowMapping]:
    writer = _WRITERS[machine.entity]

    def write(conn: Connection, steps: Sequence[Transition[S]], now: datetime) -> set[int]:
        return writer.apply(
            conn,
            [StatusWrite(t.ident, t.old.value, t.new.value, t.reason, t.values) for t in steps],
            now,
        )

    return Door(
        machine,
        read=read,
        status=lambda row: kind(row["status"]),
        write=write,
        before=before or {},
        after=after or {},
    )


def _end_lease(t: Transition[RequestStatus], now: datetime) -> Mapping[str, Any]:
    return {"lease_until": None}


def change_requests(
    ctx: Context,
    conn: Connection,
    ids: Sequence[int],
    decide: Decide[RequestStatus],
    *,
    source: str,
    now: datetime | None = None,
    strict: bool = False,
    known: Rows | None = None,
) -> TransitionResult[RequestStatus, RowMapping]:
    """Apply ``decide(row)`` to the requests ``ids`` in the caller's write transaction."""
    door = _door(
        REQUEST_MACHINE,
        RequestStatus,
        ctx.requests.read_requests,
        requests,
        {"end_lease": _end_lease},
        {"task": lambda conn, steps, h: mirror_requests(ctx, conn, steps, h)},
    )
    return change_states(
        door, conn, ids, decide, source=source, now=now or ctx.clock(), strict=strict, known=known
    )


def change_operations(
    ctx: Context,
    conn: Connection,
    ids: Sequence[int],
    decide: Decide[OperationStatus],
    *,
    source: str,
    now: datetime | None = None,
    strict: bool = False,
    known: Rows | None = None,
) -> TransitionResult[OperationStatus, RowMapping]:
    """Apply ``decide(row)`` to the operations ``ids`` in the caller's write transaction."""
    door = _door(
        OPERATION_MACHINE, OperationStatus, ctx.requests.read_operations, request_operations
    )
    return change_states(
        door, conn, ids, decide, source=source, now=now or ctx.clock(), strict=strict, known=known
    )


def change_files(
    ctx: Context,
    conn: Connection,
    ids: Sequence[int],
    decide: Decide[FileStatus],
    *,
    source: str,
    now: datetime | None = None,
    strict: bool = False,
    known: Rows | None = None,
) -> TransitionResult[FileStatus, RowMapping]:
    """Apply ``decide(row)`` to the request files ``ids`` in the caller's write transaction."""
    door = _door(FILE_MACHINE, FileStatus, ctx.requests.read_files, request_files)
    return change_states(
        door, conn, ids, decide, source=source, now=now or ctx.clock(), strict=strict, known=known
    )


def when(
    sources: Sequence[S] | frozenset[S], step: Change[S]
) -> Callable[[RowMapping], list[Change[S]] | None]:
    """A decide function: ``step`` for the rows in one of ``sources`` (read under lock),
    nothing for the others."""
    values = {s.value for s in sources}
    return lambda row: [step] if row["status"] in values else None
