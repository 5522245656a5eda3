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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from ctaprod.core.identity import Identity
from ctaprod.core.job_states import FINAL_STATES, JobStatus
from ctaprod.core.properties import TokenKind
from ctaprod.core.requests import (
    FILELESS,
    MAX_ERROR,
    FileStatus,
    OperationStatus,
    OperationType,
    RequestStatus,
    backoff_seconds,
)
from ctaprod.core.statemachine import Change
from ctaprod.db.jobs import JobState
from ctaprod.db.requests import FileAttempt
from ctaprod.logic.context import Context
from ctaprod.logic.job_status import Step, transition_jobs
from ctaprod.logic.request_claims import (
    claim_due,
    held_by,
    new_claim,
    release_expired,
)
from ctaprod.logic.request_ops import OP_KEY, SOURCE, Failure, Work, run_operation
from ctaprod.logic.request_states import change_files, change_operations, change_requests, when

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
    with ctx.db.write() as conn:
        stats.released = len(release_expired(ctx, conn, now))
        ids = claim_due(ctx, conn, now, limit, claim, replica=replica, replicas=replicas)
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


def _move_held(
    ctx: Context,
    conn: Connection,
    request_id: int,
    claim: str,
    step: Change[RequestStatus],
    now: datetime,
) -> bool:
    """Our request (still held by ``claim``, as read under lock) to ``step``; whether it
    moved. A canceled or released request is left alone; a missed write is logged."""
    result = change_requests(
        ctx,
        conn,
        [request_id],
        lambda row: [step] if held_by(row, claim) else None,
        source=SOURCE,
        now=now,
    )
    if result.missed:  # pragma: no cover - the row is locked (SQLite: one writer)
        log.warning("request %d changed while going to %s", request_id, step.target.value)
    return bool(result.applied)


def _wait_again(
    ctx: Context,
    conn: Connection,
    request_id: int,
    claim: str,
    now: datetime,
    delay: float,
    error: str,
) -> bool:
    """Our Assigned request back to Waiting, due ``delay`` seconds from ``now``, with ``error``."""
    step = Change(
        R.WAITING,
        values={"not_before": now + timedelta(seconds=delay), "error": error[:MAX_ERROR]},
    )
    return _move_held(ctx, conn, request_id, claim, step, now)


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
        done = Change(R.DONE, values={"error": ""})
        if _move_held(ctx, conn, request_id, claim, done, ctx.clock()):
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
    ended: dict[int, Change[FileStatus]] = {}  # files leaving Waiting
    retried: list[FileAttempt] = []  # files staying Waiting, one attempt more
    worst: tuple[str, int] | None = None  # the error to report and its attempt count
    final: str | None = None  # the reason the request fails
    for f in waiting:
        res, attempts = outcome.get(int(f["id"])), int(f["attempts"]) + 1
        if res is None:
            ended[int(f["id"])] = Change(F.DONE, values={"attempts": attempts, "error": ""})
            continue
        error = res.error[:MAX_ERROR]
        if worst is None or attempts > worst[1]:
            worst = (f"{f['lfn']}: {error}", attempts)
        if res.permanent or attempts >= data.request_max_attempts:
            final = final or f"{op['type']} {f['lfn']}: {error}"
            ended[int(f["id"])] = Change(F.FAILED, values={"attempts": attempts, "error": error})
        else:
            retried.append(FileAttempt(int(f["id"]), attempts, error))
    op_attempts: int | None = None
    if not waiting and op["type"] in FILELESS:
        res, op_attempts = outcome.get(OP_KEY), int(op["attempts"]) + 1
        if res is not None:
            worst = (res.error[:MAX_ERROR], op_attempts)
            if res.permanent or op_attempts >= data.request_max_attempts:
                final = f"{op['type']}: {res.error}"
    with ctx.db.write() as conn:
        current = ctx.requests.get(conn, request_id, lock=True)
        # What happened to the files is recorded, held or not (from the state read).
        ctx.requests.record_attempts(conn, retried)
        files = change_files(
            ctx,
            conn,
            list(ended),
            lambda f: [ended[int(f["id"])]] if f["status"] == F.WAITING else None,
            source=SOURCE,
            now=now,
        )
        if files.missed:  # pragma: no cover - locked rows (SQLite: one writer)
            log.warning("request %d: files changed meanwhile: %s", request_id, files.missed)
        if current is None or not held_by(current, claim):
            return "lost"
        _op_step(ctx, conn, op_id, [Op.QUEUED], Change(Op.WAITING), now)
        if final is not None:
            return _fail(ctx, conn, row, op_id, final[:MAX_ERROR], claim, now, op_attempts)
        if worst is not None:
            ctx.requests.note_operation(conn, op_id, now, error=worst[0], attempts=op_attempts)
            delay = backoff_seconds(
                worst[1], data.request_backoff_seconds, data.request_backoff_max_seconds
            )
            _wait_again(
                ctx, conn, request_id, claim, now, delay, f"retrying in {delay:g} s: {worst[0]}"
            )
            return "retrying"
        values: dict[str, Any] = {"error": ""}
        if op_attempts is not None:
            values["attempts"] = op_attempts
        _op_step(ctx, conn, op_id, [Op.WAITING], Change(Op.DONE, values=values), now)
        nxt = _next_op(ctx, conn, request_id, int(op["position"]))
        if nxt is not None:
            _op_step(ctx, conn, nxt, [Op.QUEUED], Change(Op.WAITING), now)
        return "next"


def _op_step(
    ctx: Context,
    conn: Connection,
    op_id: int,
    sources: Sequence[OperationStatus],
    step: Change[OperationStatus],
    now: datetime,
) -> bool:
    """Operation ``op_id`` to ``step`` if it is (as read under lock) in one of ``sources``."""
    result = change_operations(ctx, conn, [op_id], when(sources, step), source=SOURCE, now=now)
    if result.missed:  # pragma: no cover - the row is locked (SQLite: one writer)
        log.warning("operation %d changed while going to %s", op_id, step.target.value)
    return bool(result.applied)


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
    op_attempts: int | None,
) -> str:
    """Fail the operation, the request and the request's job (in the caller's transaction)."""
    request_id = int(row["request_id"])
    values: dict[str, Any] = {"error": reason}
    if op_attempts is not None:
        values["attempts"] = op_attempts
    _op_step(ctx, conn, op_id, [Op.WAITING], Change(Op.FAILED, values=values), now)
    if not _move_held(
        ctx, conn, request_id, claim, Change(R.FAILED, values={"error": reason}), now
    ):
        return "lost"  # pragma: no cover - held_by was checked under the same lock
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
