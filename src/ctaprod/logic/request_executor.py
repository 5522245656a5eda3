"""The request executor: claim due requests, run their operations, back off, report failures.

:func:`execute_due` claims due Waiting requests (Waiting -> Assigned, atomic in the
database), runs the first unfinished operation's waiting files through its handler
(:mod:`ctaprod.logic.request_ops`) outside any transaction, and records the outcome in one
transaction that first checks the request is still held by this claim (a cancel may have
come in between). All files Done: the operation is Done, the next one Waiting, and the pass
goes on. A failed file is retried later: the request returns to Waiting with an exponential
``not_before``. A file past ``request_max_attempts`` (or failed for good) fails its operation
and the request, with the reason; the request's job, if any, then fails too.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from ctaprod.core.identity import Identity
from ctaprod.core.job_states import FINAL_STATES, JobStatus
from ctaprod.core.properties import TokenKind
from ctaprod.core.requests import (
    FILE_MACHINE,
    FILELESS,
    MAX_ERROR,
    OPERATION_MACHINE,
    REQUEST_MACHINE,
    FileStatus,
    OperationStatus,
    OperationType,
    RequestStatus,
    backoff_seconds,
)
from ctaprod.db.jobs import JobState
from ctaprod.db.requests import FileResult
from ctaprod.logic.context import Context
from ctaprod.logic.job_status import Step, transition_jobs
from ctaprod.logic.request_ops import OP_KEY, SOURCE, Failure, Work, run_operation

log = logging.getLogger("ctaprod.requests")
R, Op, F = RequestStatus, OperationStatus, FileStatus
MAX_MINOR = 128  # jobs.minor_status width


@dataclass
class ExecutionStats:
    """What one executor pass did (counts of requests, and of operations completed)."""

    claimed: int = 0
    done: int = 0
    retrying: int = 0
    failed: int = 0
    lost: int = 0  # canceled while being executed
    operations_done: int = 0
    released: int = 0  # their executor's lease passed (it died): back to Waiting

    @property
    def total(self) -> int:
        return self.claimed + self.released


def new_claim(worker: str) -> str:
    """A claim name unique to one executor pass: ``worker`` plus a random suffix."""
    return f"{worker[:100]}#{uuid.uuid4().hex[:12]}"


def lease_seconds(ctx: Context) -> float:
    return ctx.settings.data.request_lease_seconds


def renew_leases(ctx: Context, claim: str, now: datetime | None = None) -> int:
    """Extend the leases of the requests ``claim`` still holds by a full lease from ``now``;
    how many it holds. The executor calls it (every third of a lease) while it works."""
    now = now or ctx.clock()
    with ctx.db.write() as conn:
        return ctx.requests.renew_leases(conn, claim, now + timedelta(seconds=lease_seconds(ctx)))


def execute_due(
    ctx: Context,
    now: datetime | None = None,
    limit: int = 100,
    worker: str = "executor",
    *,
    claim: str | None = None,
    replica: int = 0,
    replicas: int = 1,
) -> ExecutionStats:
    """Claim up to ``limit`` Waiting requests due at ``now`` and execute each as far as it
    goes. Requests whose executor's lease passed (it died) are released first.

    The claims are leased for ``data.request_lease_seconds``; a pass longer than that must
    be accompanied by :func:`renew_leases` on ``claim`` (the executor agent does it), or
    another executor may take the requests over."""
    now = now or ctx.clock()
    stats = ExecutionStats()
    claim = claim or new_claim(worker)
    lease = timedelta(seconds=lease_seconds(ctx))
    with ctx.db.write() as conn:
        stats.released = ctx.requests.release_expired(conn, now, now - lease)
        ids = ctx.requests.claim_due(
            conn, now, limit, claim, lease_until=now + lease, replica=replica, replicas=replicas
        )
    stats.claimed = len(ids)
    for request_id in ids:
        try:
            _execute(ctx, request_id, claim, stats)
        except Exception as exc:  # a database hiccup (deadlock victim, lost connection)
            log.exception("request %d: execution broke off", request_id)
            _release(ctx, request_id, claim, f"executor error: {type(exc).__name__}: {exc}")
            stats.retrying += 1
    return stats


def _release(ctx: Context, request_id: int, claim: str, error: str) -> None:
    """Give a request back (Waiting, after the base backoff); if even that fails, it is
    released once its lease has passed."""
    now = ctx.clock()
    try:
        with ctx.db.write() as conn:
            _wait_again(
                ctx, conn, request_id, claim, now, ctx.settings.data.request_backoff_seconds, error
            )
    except Exception:
        log.exception("request %d: could not be released", request_id)


def _wait_again(
    ctx: Context,
    conn: Connection,
    request_id: int,
    claim: str,
    now: datetime,
    delay: float,
    error: str,
) -> None:
    """Our Assigned request back to Waiting, due ``delay`` seconds from ``now``, with ``error``."""
    ctx.requests.set_status(
        conn,
        request_id,
        [R.ASSIGNED],
        R.WAITING,
        now,
        assigned_by=claim,
        not_before=now + timedelta(seconds=delay),
        error=error[:MAX_ERROR],
        lease_until=None,
    )


def _owner_identity(ctx: Context, conn: Connection, row: Mapping[str, Any]) -> Identity:
    """The request's owner with the current properties of the owner's group."""
    group = ctx.auth.group(conn, row["owner_group"])
    props = frozenset(filter(None, group["properties"].split(","))) if group else frozenset()
    return Identity(row["owner"], row["owner_group"], TokenKind.USER, props)


def _execute(ctx: Context, request_id: int, claim: str, stats: ExecutionStats) -> None:
    with ctx.db.read() as conn:
        row = ctx.requests.get(conn, request_id)
        if row is None:
            return
        ops = ctx.requests.operations(conn, request_id)
        files = ctx.requests.files(conn, [int(op["op_id"]) for op in ops])
        ident = _owner_identity(ctx, conn, row)
    if row["status"] != R.ASSIGNED or row["assigned_by"] != claim:
        stats.lost += 1  # canceled since the claim
        return
    for op in ops:
        status = Op(op["status"])
        if status is Op.DONE:
            continue
        if status not in (Op.WAITING, Op.QUEUED):  # cannot happen while Assigned
            log.error("request %d: operation %d is %s", request_id, op["op_id"], status.value)
            stats.lost += 1
            return
        waiting = [f for f in files if f["op_id"] == op["op_id"] and f["status"] == F.WAITING]
        kind = OperationType(op["type"])
        work = Work(request_id, row["job_id"], kind, op["arguments"], waiting)
        outcome = run_operation(ctx, ident, work) if waiting or kind in FILELESS else {}
        verdict = _record(ctx, row, op, waiting, outcome, claim)
        if verdict != "next":
            setattr(stats, verdict, getattr(stats, verdict) + 1)
            return
        stats.operations_done += 1
    with ctx.db.write() as conn:
        REQUEST_MACHINE.check(request_id, R.ASSIGNED, R.DONE)
        if ctx.requests.set_status(
            conn,
            request_id,
            [R.ASSIGNED],
            R.DONE,
            ctx.clock(),
            assigned_by=claim,
            error="",
            lease_until=None,
        ):
            stats.done += 1
        else:
            stats.lost += 1


def _record(
    ctx: Context,
    row: Mapping[str, Any],
    op: Mapping[str, Any],
    waiting: Sequence[Mapping[str, Any]],
    outcome: Mapping[int, Failure | None],
    claim: str,
) -> str:
    """Write one attempt's outcome; ``next``, ``retrying``, ``failed`` or ``lost``."""
    request_id, op_id = int(row["request_id"]), int(op["op_id"])
    data = ctx.settings.data
    now = ctx.clock()
    results: list[FileResult] = []
    worst: tuple[str, int] | None = None  # the error to report and its attempt count
    final: str | None = None  # the reason the request fails
    for f in waiting:
        res, attempts = outcome.get(int(f["id"])), int(f["attempts"]) + 1
        new = F.DONE if res is None else F.WAITING
        error = "" if res is None else res.error[:MAX_ERROR]
        if res is not None:
            if worst is None or attempts > worst[1]:
                worst = (f"{f['lfn']}: {error}", attempts)
            if res.permanent or attempts >= data.request_max_attempts:
                new, final = F.FAILED, final or f"{op['type']} {f['lfn']}: {error}"
        if new is not F.WAITING:
            FILE_MACHINE.check(f["id"], F.WAITING, new)
        results.append(FileResult(int(f["id"]), F.WAITING, new, attempts, error))
    op_values: dict[str, Any] = {}
    if not waiting and op["type"] in FILELESS:
        res, attempts = outcome.get(OP_KEY), int(op["attempts"]) + 1
        op_values["attempts"] = attempts
        if res is not None:
            worst = (res.error[:MAX_ERROR], attempts)
            if res.permanent or attempts >= data.request_max_attempts:
                final = f"{op['type']}: {res.error}"
    with ctx.db.write() as conn:
        current = ctx.requests.get(conn, request_id, lock=True)
        ctx.requests.set_file_results(conn, results)  # what happened, held or not
        if current is None or current["status"] != R.ASSIGNED or current["assigned_by"] != claim:
            return "lost"
        ctx.requests.set_op_status(conn, [op_id], [Op.QUEUED], Op.WAITING, now)
        if final is not None:
            return _fail(ctx, conn, row, op_id, final[:MAX_ERROR], claim, now, op_values)
        if worst is not None:
            delay = backoff_seconds(
                worst[1], data.request_backoff_seconds, data.request_backoff_max_seconds
            )
            ctx.requests.set_op_status(
                conn, [op_id], [Op.WAITING], Op.WAITING, now, error=worst[0], **op_values
            )
            REQUEST_MACHINE.check(request_id, R.ASSIGNED, R.WAITING)
            _wait_again(
                ctx, conn, request_id, claim, now, delay, f"retrying in {delay:g} s: {worst[0]}"
            )
            return "retrying"
        OPERATION_MACHINE.check(op_id, Op.WAITING, Op.DONE)
        ctx.requests.set_op_status(conn, [op_id], [Op.WAITING], Op.DONE, now, error="", **op_values)
        nxt = _next_op(ctx, conn, request_id, int(op["position"]))
        if nxt is not None:
            OPERATION_MACHINE.check(nxt, Op.QUEUED, Op.WAITING)
            ctx.requests.set_op_status(conn, [nxt], [Op.QUEUED], Op.WAITING, now)
        return "next"


def _next_op(ctx: Context, conn: Connection, request_id: int, position: int) -> int | None:
    """The operation after ``position`` if it is Queued."""
    for op in ctx.requests.operations(conn, request_id):
        if op["position"] > position:
            return int(op["op_id"]) if op["status"] == Op.QUEUED else None
    return None


def _fail(
    ctx: Context,
    conn: Connection,
    row: Mapping[str, Any],
    op_id: int,
    reason: str,
    claim: str,
    now: datetime,
    op_values: Mapping[str, Any],
) -> str:
    """Fail the operation, the request and the request's job (in the caller's transaction)."""
    request_id = int(row["request_id"])
    OPERATION_MACHINE.check(op_id, Op.WAITING, Op.FAILED)
    ctx.requests.set_op_status(
        conn, [op_id], [Op.WAITING], Op.FAILED, now, error=reason, **op_values
    )
    REQUEST_MACHINE.check(request_id, R.ASSIGNED, R.FAILED)
    ctx.requests.set_status(
        conn,
        request_id,
        [R.ASSIGNED],
        R.FAILED,
        now,
        assigned_by=claim,
        error=reason,
        lease_until=None,
    )
    log.warning("request %d failed: %s", request_id, reason)
    job_id = row["job_id"]
    if job_id is not None:
        minor = f"Failover request failed: {reason}"[:MAX_MINOR]

        def decide(state: JobState) -> list[Step] | None:
            if state.status in FINAL_STATES:
                return None
            return [Step(JobStatus.FAILED, minor)]

        transition_jobs(ctx, conn, [int(job_id)], decide, SOURCE, strict=False)
    return "failed"
