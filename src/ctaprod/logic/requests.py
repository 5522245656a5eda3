"""Requests: create, list, show, retry, cancel.

The executor (:func:`execute_due`, claim, step, backoff, failure) lives in
:mod:`ctaprod.logic.request_executor`; it is re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from ctaprod.core.errors import Conflict, Forbidden, InvalidTransition, NotFound
from ctaprod.core.identity import Identity
from ctaprod.core.properties import TokenKind
from ctaprod.core.requests import (
    REQUEST_MACHINE,
    FileStatus,
    OperationInfo,
    OperationStatus,
    RequestFileInfo,
    RequestInfo,
    RequestPage,
    RequestSpec,
    RequestStatus,
    RequestSummary,
    check_spec,
)
from ctaprod.core.statemachine import Change, TransitionResult
from ctaprod.logic.context import Context
from ctaprod.logic.job_scope import FINISHING, require_job_scope
from ctaprod.logic.jobs import check_access
from ctaprod.logic.request_claims import release_expired
from ctaprod.logic.request_executor import ExecutionStats, execute_due
from ctaprod.logic.request_states import change_files, change_operations, change_requests, when

__all__ = [
    "ExecutionStats",
    "cancel",
    "cancel_request",
    "create_request",
    "execute_due",
    "get_request",
    "list_requests",
    "retry",
    "retry_request",
]

R, Op, F = RequestStatus, OperationStatus, FileStatus


def _sees_all(ident: Identity) -> bool:
    return ident.kind is TokenKind.USER and (ident.is_job_admin or ident.is_operator)


def create_request(ctx: Context, ident: Identity, spec: RequestSpec) -> int:
    """Store a checked request (Waiting, due now) with its operations and files; its ID.

    Job tokens create requests for their own job only; users for their own jobs (job
    administrators for any)."""
    if ident.kind is TokenKind.PILOT:
        raise Forbidden("a pilot token cannot create requests")
    if ident.kind is TokenKind.JOB:
        spec = spec.model_copy(update={"job_id": ident.job_id})
    with ctx.db.write() as conn:
        # A job's token: its own job, while its attempt is current and until its end (the
        # wrapper leaves the request finishing its outputs once the job is Completed).
        require_job_scope(ctx, conn, ident, allowed=FINISHING, lock=True)
        spec = check_spec(spec)
        if spec.job_id is not None and ident.kind is TokenKind.USER:
            states = ctx.jobs.states(conn, [spec.job_id])
            if spec.job_id not in states:
                raise NotFound(f"no job {spec.job_id}")
            check_access(ident, states[spec.job_id])
        if spec.job_id is not None and spec.name:
            # A job's named request is created once: a retry after a lost reply gets the same.
            known = ctx.requests.find_job_request(conn, spec.job_id, spec.name, ident.user)
            if known is not None:
                return known
        return store_request(ctx, conn, ident, spec)


def store_request(ctx: Context, conn: Connection, ident: Identity, spec: RequestSpec) -> int:
    """Write a checked request (Waiting, due now) with its operations and files in
    ``conn``'s transaction, owned by ``ident``; its ID (a transformation's task submission
    creates requests together with its own rows)."""
    now = ctx.clock()
    request_id = ctx.requests.insert_request(
        conn,
        {
            "name": spec.name,
            "owner": ident.user,
            "owner_group": ident.group,
            "job_id": spec.job_id,
            "status": R.WAITING.value,
            "created": now,
            "last_update": now,
            "not_before": now,
        },
    )
    op_ids = ctx.requests.insert_operations(
        conn,
        request_id,
        [
            {
                "position": i,
                "type": op.type,
                "status": (Op.WAITING if i == 0 else Op.QUEUED).value,
                "arguments": op.arguments,
                "last_update": now,
            }
            for i, op in enumerate(spec.operations)
        ],
    )
    ctx.requests.insert_files(
        conn,
        [
            {
                "op_id": op_id,
                "lfn": f.lfn,
                "status": F.WAITING.value,
                "size": f.size,
                "checksum": f.checksum,
                "guid": f.guid,
            }
            for op_id, op in zip(op_ids, spec.operations, strict=True)
            for f in op.files
        ],
    )
    return request_id


def list_requests(
    ctx: Context,
    ident: Identity,
    *,
    statuses: Sequence[RequestStatus] = (),
    owner: str | None = None,
    job_id: int | None = None,
    cursor: int | None = None,
    limit: int = 100,
) -> RequestPage:
    """A page of requests, newest first; users see their own, operators and admins all."""
    if ident.kind is TokenKind.JOB:
        with ctx.db.read() as conn:
            require_job_scope(ctx, conn, ident, allowed=FINISHING)
        job_id, owner = ident.job_id, ident.user
    elif not _sees_all(ident):
        if owner is not None and owner != ident.user:
            raise Forbidden(f"you can only list your own requests, not {owner!r}'s")
        owner = ident.user
    with ctx.db.read() as conn:
        rows = ctx.requests.search(
            conn, statuses=statuses, owner=owner, job_id=job_id, cursor=cursor, limit=limit
        )
    items = [RequestSummary.model_validate(dict(r)) for r in rows]
    more = len(items) == limit
    return RequestPage(requests=items, next_cursor=items[-1].request_id if more else None)


def _visible(ident: Identity, row: Mapping[str, Any] | None, request_id: int) -> Mapping[str, Any]:
    if row is None:
        raise NotFound(f"no request {request_id}")
    if ident.kind is TokenKind.JOB:
        if row["job_id"] is None or row["job_id"] != ident.job_id:
            raise NotFound(f"no request {request_id}")
    elif row["owner"] != ident.user and not _sees_all(ident):
        raise NotFound(f"no request {request_id}")
    return row


def _info(ctx: Context, conn: Connection, row: Mapping[str, Any]) -> RequestInfo:
    ops = ctx.requests.operations(conn, int(row["request_id"]))
    files: dict[int, list[RequestFileInfo]] = {int(op["op_id"]): [] for op in ops}
    for f in ctx.requests.files(conn, list(files)):
        files[int(f["op_id"])].append(RequestFileInfo.model_validate(dict(f)))
    return RequestInfo(
        **dict(row),
        operations=[OperationInfo(**op, files=files[int(op["op_id"])]) for op in ops],
    )


def get_request(ctx: Context, ident: Identity, request_id: int) -> RequestInfo:
    """A request with its operations and their files."""
    with ctx.db.read() as conn:
        require_job_scope(ctx, conn, ident, allowed=FINISHING)
        row = _visible(ident, ctx.requests.get(conn, request_id), request_id)
        return _info(ctx, conn, row)


def retry_request(ctx: Context, ident: Identity, request_id: int) -> RequestInfo:
    """Retry a stuck request now, or say why not.

    - Failed: back to Waiting, due now; its failed operation and files start again with no
      attempts;
    - Assigned to an executor whose lease passed (it died): back to Waiting, due now;
    - Waiting out a backoff: due now.

    Done and Canceled requests, and Assigned ones whose executor's lease runs, raise
    :class:`InvalidTransition` naming the reason; a request that changed between the read
    and the write raises :class:`Conflict`.
    """
    now = ctx.clock()
    with ctx.db.write() as conn:
        require_job_scope(ctx, conn, ident, allowed=FINISHING)
        row = _visible(ident, ctx.requests.get(conn, request_id, lock=True), request_id)
        status = R(row["status"])
        if status is R.FAILED:
            again = Change(R.WAITING, values={"not_before": now, "error": ""})
            moved = _change(ctx, conn, request_id, again, now, row, ident.user).applied != []
            if moved:
                ops = [int(op["op_id"]) for op in ctx.requests.operations(conn, request_id)]
                fresh = {"error": "", "attempts": 0}
                change_operations(
                    ctx,
                    conn,
                    ops,
                    when([Op.FAILED], Change(Op.WAITING, values=fresh)),
                    source=ident.user,
                    now=now,
                )
                files = [int(f["id"]) for f in ctx.requests.files(conn, ops)]
                change_files(
                    ctx,
                    conn,
                    files,
                    when([F.FAILED], Change(F.WAITING, values=fresh)),
                    source=ident.user,
                    now=now,
                )
        elif status is R.ASSIGNED:
            lease = _lease_end(ctx, row)
            if lease > now:
                why = (
                    f"executor {row['assigned_by'] or '?'} holds it, its lease runs until "
                    f"{lease:%Y-%m-%d %H:%M:%S} UTC; retry after that if it died"
                )
                raise InvalidTransition("request", request_id, status.value, R.WAITING.value, why)
            moved = release_expired(ctx, conn, now, [request_id]) == [request_id]
        elif status is R.WAITING:
            moved = ctx.requests.due_now(conn, request_id, now)
        else:
            why = "final state: nothing to retry" if status in REQUEST_MACHINE.final else ""
            raise InvalidTransition("request", request_id, status.value, R.WAITING.value, why)
        if not moved:  # pragma: no cover - the row is locked above (SQLite: one writer)
            raise Conflict(f"request {request_id} changed while being retried; try again")
        return _info(ctx, conn, ctx.requests.get(conn, request_id) or row)


def _change(
    ctx: Context,
    conn: Connection,
    request_id: int,
    step: Change[RequestStatus],
    now: datetime,
    row: Mapping[str, Any],
    source: str,
) -> TransitionResult[RequestStatus, Any]:
    """One request to ``step`` from the state read under lock (``row``); refused steps
    raise (InvalidTransition naming the state), a missed write raises Conflict."""
    result = change_requests(
        ctx,
        conn,
        [request_id],
        lambda r: [step],
        source=source,
        now=now,
        strict=True,
        known={request_id: row},  # type: ignore[dict-item]
    )
    if result.missed:  # pragma: no cover - the row is locked (SQLite: one writer)
        raise Conflict(f"request {request_id} changed meanwhile; try again")
    return result


def _lease_end(ctx: Context, row: Mapping[str, Any]) -> datetime:
    """When the claim on an Assigned request expires (rows claimed before leases existed:
    a lease from their last update)."""
    lease: datetime | None = row["lease_until"]
    if lease is not None:
        return lease
    last: datetime = row["last_update"]
    return last + timedelta(seconds=ctx.settings.data.request_lease_seconds)


def cancel_request(ctx: Context, ident: Identity, request_id: int) -> RequestInfo:
    """Cancel a Waiting or Assigned request; its unfinished operations are Canceled."""
    now = ctx.clock()
    with ctx.db.write() as conn:
        require_job_scope(ctx, conn, ident, allowed=FINISHING)
        row = _visible(ident, ctx.requests.get(conn, request_id, lock=True), request_id)
        _change(ctx, conn, request_id, Change(R.CANCELED), now, row, ident.user)
        ops = [int(op["op_id"]) for op in ctx.requests.operations(conn, request_id)]
        change_operations(
            ctx,
            conn,
            ops,
            when([Op.QUEUED, Op.WAITING], Change(Op.CANCELED)),
            source=ident.user,
            now=now,
        )
        return _info(ctx, conn, ctx.requests.get(conn, request_id) or row)


retry = retry_request
cancel = cancel_request
