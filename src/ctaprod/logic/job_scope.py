"""What a job token may do: the one rule, checked by every use case that accepts one.

A job token acts for one attempt of one job: it is good only while that attempt is the job's
current one (same pilot, same reschedule count), the job has not ended, and its owner is
enabled and still a member of the token's group (checked with the user's rights when the
token is verified, :class:`ctaprod.logic.auth.TokenService`). It reaches only that job's own
objects: its status, heartbeats, sandboxes, requests and the catalog entries it writes.

Two degrees of "not ended":

- ``PAYLOAD`` (Matched, Running, Stalled, Completing): what a running payload and its wrapper
  do: catalog and data operations, sandboxes, heartbeats;
- ``FINISHING`` adds Completed: the wrapper's last words once the payload is over, its final
  status report and the request that finishes the job's outputs (the failover path).

Every token kind other than ``job`` passes these checks untouched (their own rules apply).
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Connection

from ctaprod.core.errors import CtaprodError, Forbidden
from ctaprod.core.identity import Identity
from ctaprod.core.job_states import ACTIVE_STATES, JobStatus
from ctaprod.core.properties import TokenKind
from ctaprod.db.jobs import JobState
from ctaprod.logic.context import Context

J = JobStatus
PAYLOAD: frozenset[JobStatus] = ACTIVE_STATES
FINISHING: frozenset[JobStatus] = ACTIVE_STATES | {J.COMPLETED}


def job_refusal(
    ident: Identity,
    state: JobState | None,
    job_id: int | None = None,
    *,
    allowed: Collection[JobStatus] | None = PAYLOAD,
) -> CtaprodError | None:
    """Why the job token ``ident`` may not act (on ``job_id``, default its own job) given its
    job's ``state``, or None if it may. ``allowed=None`` skips the status check (the caller
    answers a non-live job itself, e.g. heartbeats reply Kill). Other kinds: None."""
    if ident.kind is not TokenKind.JOB:
        return None
    own = ident.job_id
    if own is None or (job_id is not None and job_id != own):
        return Forbidden(f"this job token is for job {own}, not {job_id}")
    if state is None:
        return Forbidden(f"job {own} no longer exists: its token is void", job_id=own)
    if (state.pilot_id, state.reschedule_count) != (ident.pilot_id, ident.attempt):
        return Forbidden(
            f"attempt {ident.attempt} of job {own} has been superseded (the job is at "
            f"attempt {state.reschedule_count}): its token is void",
            job_id=own,
            attempt=ident.attempt,
        )
    if allowed is None:
        return None
    if state.kill_requested and J.KILLED not in allowed:
        return Forbidden(f"job {own} is being killed: its token is void", job_id=own)
    if state.status not in allowed:
        return Forbidden(
            f"job {own} is {state.status.value}: its token is void for this", job_id=own
        )
    return None


def read_job_state(
    ctx: Context, conn: Connection, job_id: int, *, lock: bool = False
) -> JobState | None:
    """The job's state, row-locked (until the transaction ends) with ``lock``."""
    if lock:
        return ctx.jobs.states(conn, [job_id]).get(job_id)
    row = ctx.jobs.get(conn, job_id)
    if row is None:
        return None
    return JobState(
        job_id,
        JobStatus(row["status"]),
        row["owner"],
        row["owner_group"],
        row["pilot_id"],
        int(row["reschedule_count"]),
        bool(row["kill_requested"]),
    )


def require_job_scope(
    ctx: Context,
    conn: Connection,
    ident: Identity,
    job_id: int | None = None,
    *,
    allowed: Collection[JobStatus] | None = PAYLOAD,
    lock: bool = False,
) -> JobState | None:
    """Raise the refusal of :func:`job_refusal` for a job token, read from the job's row now
    (``lock``: held until the transaction ends, so that a reschedule cannot slip between the
    check and the write). The job's state for a job token, None for any other kind."""
    if ident.kind is not TokenKind.JOB:
        return None
    own = ident.job_id
    state = None if own is None else read_job_state(ctx, conn, own, lock=lock)
    refusal = job_refusal(ident, state, job_id, allowed=allowed)
    if refusal is not None:
        raise refusal
    return state
