"""Requests: ordered operations with per-file status (the failover path).

Bulk-first; the caller owns the transaction. Status changes do not happen here: they go
through the doors of ``logic.request_states`` (locked reads below, conditional UPDATEs of
``db.statechange``); this module writes what is not a status change (attempts, leases).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    RowMapping,
    Table,
    and_,
    bindparam,
    insert,
    or_,
    select,
    update,
)

from ctaprod.core.requests import FileStatus, OperationStatus, RequestStatus
from ctaprod.db.tables import request_files, request_operations, requests

R = RequestStatus

_FILE_ATTEMPT = (
    update(request_files)
    .where(
        request_files.c.id == bindparam("b_id"),
        request_files.c.status == FileStatus.WAITING.value,
    )
    .values(attempts=bindparam("b_attempts"), error=bindparam("b_error"))
)
Rows = dict[int, RowMapping]


@dataclass(frozen=True)
class FileAttempt:
    """A failed attempt on a file that stays Waiting (to be tried again)."""

    id: int
    attempts: int
    error: str


class RequestDB:
    """Requests, operations and files. Methods never commit."""

    # --- writing ----------------------------------------------------------------------
    def find_job_request(self, conn: Connection, job_id: int, name: str, owner: str) -> int | None:
        """The id of the request ``name`` of ``owner`` for job ``job_id``, if there is one."""
        t = requests.c
        stmt = select(t.request_id).where(t.job_id == job_id, t.name == name, t.owner == owner)
        return conn.execute(stmt.order_by(t.request_id).limit(1)).scalar()

    def insert_request(self, conn: Connection, row: Mapping[str, Any]) -> int:
        res = conn.execute(insert(requests).values(**row))
        return int(res.inserted_primary_key[0])  # type: ignore[index]

    def insert_operations(
        self, conn: Connection, request_id: int, rows: Sequence[Mapping[str, Any]]
    ) -> list[int]:
        """Insert the operations (``arguments`` as a mapping); their IDs in position order."""
        conn.execute(
            insert(request_operations),
            [
                {**r, "request_id": request_id, "arguments": json.dumps(r["arguments"])}
                for r in rows
            ],
        )
        ids = conn.execute(
            select(request_operations.c.op_id)
            .where(request_operations.c.request_id == request_id)
            .order_by(request_operations.c.position)
        ).scalars()
        return [int(i) for i in ids]

    def insert_files(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            conn.execute(insert(request_files), list(rows))

    def record_attempts(self, conn: Connection, attempts: Sequence[FileAttempt]) -> int:
        """Count failed attempts on files that stay Waiting (one statement per batch); how
        many rows changed. Not a status change: status moves go through the file door."""
        if not attempts:
            return 0
        res = conn.execute(
            _FILE_ATTEMPT,
            [{"b_id": a.id, "b_attempts": a.attempts, "b_error": a.error} for a in attempts],
        )
        return int(res.rowcount)

    def note_operation(
        self, conn: Connection, op_id: int, now: datetime, *, error: str, attempts: int | None
    ) -> None:
        """The last error (and attempt count) of an operation that stays Waiting."""
        values: dict[str, Any] = {"error": error, "last_update": now}
        if attempts is not None:
            values["attempts"] = attempts
        conn.execute(
            update(request_operations)
            .where(
                request_operations.c.op_id == op_id,
                request_operations.c.status == OperationStatus.WAITING.value,
            )
            .values(**values)
        )

    # --- claiming (the status changes themselves go through the request door) ----------
    def due(
        self,
        conn: Connection,
        now: datetime,
        limit: int,
        *,
        replica: int = 0,
        replicas: int = 1,
    ) -> dict[int, RowMapping]:
        """Up to ``limit`` Waiting requests due at ``now``, oldest due first, by ID.

        On engines with row locks they are locked with SKIP LOCKED, so concurrent executors
        take different rows; on SQLite the caller holds the single write lock.
        """
        stmt = (
            select(requests)
            .where(requests.c.status == R.WAITING.value, requests.c.not_before <= now)
            .order_by(requests.c.not_before, requests.c.request_id)
            .limit(limit)
        )
        if replicas > 1:
            stmt = stmt.where(requests.c.request_id % replicas == replica)
        if conn.dialect.name != "sqlite":
            stmt = stmt.with_for_update(skip_locked=True)
        return {int(r["request_id"]): r for r in conn.execute(stmt).mappings()}

    def expired(
        self,
        conn: Connection,
        now: datetime,
        unleased_before: datetime,
        ids: Sequence[int] = (),
        limit: int = 1000,
    ) -> dict[int, RowMapping]:
        """Assigned requests whose lease passed (their executor died), locked (skipping
        locked rows), by ID; rows claimed before leases existed count as expired once
        untouched since ``unleased_before``. With ``ids``, only those."""
        expired = or_(
            requests.c.lease_until < now,
            and_(requests.c.lease_until.is_(None), requests.c.last_update < unleased_before),
        )
        stmt = (
            select(requests)
            .where(requests.c.status == R.ASSIGNED.value, expired)
            .order_by(requests.c.request_id)
            .limit(limit)
        )
        if ids:
            stmt = stmt.where(requests.c.request_id.in_(list(ids)))
        if conn.dialect.name != "sqlite":
            stmt = stmt.with_for_update(skip_locked=True)
        return {int(r["request_id"]): r for r in conn.execute(stmt).mappings()}

    def renew_leases(self, conn: Connection, worker: str, until: datetime) -> int:
        """Extend to ``until`` the leases of the requests still Assigned to claim ``worker``;
        how many it still holds."""
        res = conn.execute(
            update(requests)
            .where(requests.c.status == R.ASSIGNED.value, requests.c.assigned_by == worker)
            .values(lease_until=until)
        )
        return int(res.rowcount)

    def due_now(self, conn: Connection, request_id: int, now: datetime) -> bool:
        """Make a Waiting request due at ``now`` (cut its backoff short); whether it is Waiting."""
        res = conn.execute(
            update(requests)
            .where(requests.c.request_id == request_id, requests.c.status == R.WAITING.value)
            .values(not_before=now, last_update=now)
        )
        return res.rowcount == 1

    # --- locked reads for the doors -----------------------------------------------------
    def _locked(self, conn: Connection, table: Table, key: str, ids: Sequence[int]) -> Rows:
        if not ids:
            return {}
        col = table.c[key]
        stmt = select(table).where(col.in_(list(ids))).order_by(col)
        if conn.dialect.name != "sqlite":
            stmt = stmt.with_for_update()
        return {int(r[key]): r for r in conn.execute(stmt).mappings()}

    def read_requests(self, conn: Connection, ids: Sequence[int]) -> Rows:
        """Request rows by ID, locked for update where the engine has locks."""
        return self._locked(conn, requests, "request_id", ids)

    def read_operations(self, conn: Connection, ids: Sequence[int]) -> Rows:
        """Operation rows by ID (``arguments`` as stored), locked where the engine has locks."""
        return self._locked(conn, request_operations, "op_id", ids)

    def read_files(self, conn: Connection, ids: Sequence[int]) -> Rows:
        """Request-file rows by ID, locked where the engine has locks."""
        return self._locked(conn, request_files, "id", ids)

    # --- reading ----------------------------------------------------------------------
    def get(
        self, conn: Connection, request_id: int, *, lock: bool = False
    ) -> dict[str, Any] | None:
        """The request's row (locked for update with ``lock`` where the engine has locks)."""
        stmt = select(requests).where(requests.c.request_id == request_id)
        if lock and conn.dialect.name != "sqlite":
            stmt = stmt.with_for_update()
        row = conn.execute(stmt).mappings().first()
        return None if row is None else dict(row)

    def search(
        self,
        conn: Connection,
        *,
        statuses: Sequence[RequestStatus] = (),
        owner: str | None = None,
        job_id: int | None = None,
        cursor: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Requests newest first; ``cursor`` is the last ID of the previous page."""
        stmt = select(requests).order_by(requests.c.request_id.desc()).limit(limit)
        if statuses:
            stmt = stmt.where(requests.c.status.in_([str(s) for s in statuses]))
        if owner is not None:
            stmt = stmt.where(requests.c.owner == owner)
        if job_id is not None:
            stmt = stmt.where(requests.c.job_id == job_id)
        if cursor is not None:
            stmt = stmt.where(requests.c.request_id < cursor)
        return [dict(r) for r in conn.execute(stmt).mappings()]

    def operations(self, conn: Connection, request_id: int) -> list[dict[str, Any]]:
        """The operations of a request in order, ``arguments`` decoded."""
        rows = conn.execute(
            select(request_operations)
            .where(request_operations.c.request_id == request_id)
            .order_by(request_operations.c.position)
        ).mappings()
        return [{**r, "arguments": json.loads(r["arguments"])} for r in rows]

    def files(self, conn: Connection, op_ids: Sequence[int]) -> list[dict[str, Any]]:
        """The files of these operations, in insertion order."""
        if not op_ids:
            return []
        rows = conn.execute(
            select(request_files)
            .where(request_files.c.op_id.in_(list(op_ids)))
            .order_by(request_files.c.id)
        ).mappings()
        return [dict(r) for r in rows]
