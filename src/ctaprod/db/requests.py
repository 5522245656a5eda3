"""Requests: ordered operations with per-file status (the failover path).

Bulk-first; the caller owns the transaction. Status changes are conditional UPDATEs on the
status the caller observed (checked against the state machines in ``logic.requests``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, or_, select, update

from ctaprod.core.requests import FileStatus, OperationStatus, RequestStatus
from ctaprod.db.tables import request_files, request_operations, requests

R = RequestStatus

_FILE_RESULT = (
    update(request_files)
    .where(request_files.c.id == bindparam("b_id"), request_files.c.status == bindparam("b_old"))
    .values(status=bindparam("b_new"), attempts=bindparam("b_attempts"), error=bindparam("b_error"))
)


@dataclass(frozen=True)
class FileResult:
    """The outcome of one attempt on one file (already checked against FILE_MACHINE)."""

    id: int
    old: FileStatus
    new: FileStatus
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

    def set_status(
        self,
        conn: Connection,
        request_id: int,
        old: Sequence[RequestStatus],
        new: RequestStatus,
        now: datetime,
        *,
        assigned_by: str | None = None,
        **values: Any,
    ) -> bool:
        """Move the request to ``new`` if it is in one of ``old`` (and, with ``assigned_by``,
        still held by that executor); whether it moved."""
        stmt = update(requests).where(
            requests.c.request_id == request_id, requests.c.status.in_([s.value for s in old])
        )
        if assigned_by is not None:
            stmt = stmt.where(requests.c.assigned_by == assigned_by)
        res = conn.execute(stmt.values(status=new.value, last_update=now, **values))
        return res.rowcount == 1

    def set_op_status(
        self,
        conn: Connection,
        op_ids: Sequence[int],
        old: Sequence[OperationStatus],
        new: OperationStatus,
        now: datetime,
        **values: Any,
    ) -> int:
        """Move the operations still in one of ``old`` to ``new``; how many moved."""
        if not op_ids:
            return 0
        res = conn.execute(
            update(request_operations)
            .where(
                request_operations.c.op_id.in_(list(op_ids)),
                request_operations.c.status.in_([s.value for s in old]),
            )
            .values(status=new.value, last_update=now, **values)
        )
        return int(res.rowcount)

    def set_file_results(self, conn: Connection, results: Sequence[FileResult]) -> int:
        """Record attempts on files (one statement per batch); how many rows changed."""
        if not results:
            return 0
        res = conn.execute(
            _FILE_RESULT,
            [
                {
                    "b_id": r.id,
                    "b_old": r.old.value,
                    "b_new": r.new.value,
                    "b_attempts": r.attempts,
                    "b_error": r.error,
                }
                for r in results
            ],
        )
        return int(res.rowcount)

    def reset_failed_files(self, conn: Connection, op_ids: Sequence[int]) -> int:
        """Failed files of these operations back to Waiting with no attempts (a retry)."""
        if not op_ids:
            return 0
        res = conn.execute(
            update(request_files)
            .where(
                request_files.c.op_id.in_(list(op_ids)),
                request_files.c.status == FileStatus.FAILED.value,
            )
            .values(status=FileStatus.WAITING.value, attempts=0, error="")
        )
        return int(res.rowcount)

    # --- claiming ---------------------------------------------------------------------
    def claim_due(
        self,
        conn: Connection,
        now: datetime,
        limit: int,
        worker: str,
        *,
        lease_until: datetime,
        replica: int = 0,
        replicas: int = 1,
    ) -> list[int]:
        """Take up to ``limit`` Waiting requests due at ``now`` (Waiting -> Assigned by
        ``worker``, which must be unique to this claim, leased until ``lease_until``); their
        IDs, oldest due first.

        On engines with row locks the candidates are locked with SKIP LOCKED, so concurrent
        executors take different rows; on SQLite the caller holds the single write lock.
        Either way the UPDATE is conditional on Waiting and the IDs are read back by
        ``worker``, so a request is never claimed twice.
        """
        stmt = (
            select(requests.c.request_id)
            .where(requests.c.status == R.WAITING.value, requests.c.not_before <= now)
            .order_by(requests.c.not_before, requests.c.request_id)
            .limit(limit)
        )
        if replicas > 1:
            stmt = stmt.where(requests.c.request_id % replicas == replica)
        if conn.dialect.name != "sqlite":
            stmt = stmt.with_for_update(skip_locked=True)
        ids = [int(i) for i in conn.execute(stmt).scalars()]
        if not ids:
            return []
        conn.execute(
            update(requests)
            .where(requests.c.request_id.in_(ids), requests.c.status == R.WAITING.value)
            .values(
                status=R.ASSIGNED.value,
                assigned_by=worker,
                last_update=now,
                lease_until=lease_until,
            )
        )
        got = conn.execute(
            select(requests.c.request_id).where(
                requests.c.request_id.in_(ids),
                requests.c.status == R.ASSIGNED.value,
                requests.c.assigned_by == worker,
            )
        ).scalars()
        return sorted(int(i) for i in got)

    def renew_leases(self, conn: Connection, worker: str, until: datetime) -> int:
        """Extend to ``until`` the leases of the requests still Assigned to claim ``worker``;
        how many it still holds."""
        res = conn.execute(
            update(requests)
            .where(requests.c.status == R.ASSIGNED.value, requests.c.assigned_by == worker)
            .values(lease_until=until)
        )
        return int(res.rowcount)

    def release_expired(
        self, conn: Connection, now: datetime, unleased_before: datetime, ids: Sequence[int] = ()
    ) -> int:
        """Assigned requests whose lease passed (their executor died) back to Waiting, due
        now; rows claimed before leases existed count as expired once untouched since
        ``unleased_before``. With ``ids``, only those. How many were released."""
        expired = or_(
            requests.c.lease_until < now,
            and_(requests.c.lease_until.is_(None), requests.c.last_update < unleased_before),
        )
        stmt = update(requests).where(requests.c.status == R.ASSIGNED.value, expired)
        if ids:
            stmt = stmt.where(requests.c.request_id.in_(list(ids)))
        res = conn.execute(
            stmt.values(
                status=R.WAITING.value,
                assigned_by="",
                lease_until=None,
                last_update=now,
                not_before=now,
            )
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
