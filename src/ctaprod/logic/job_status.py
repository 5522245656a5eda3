"""The job door: every job status change goes through :func:`transition_jobs`.

It is the generic door (:mod:`ctaprod.logic.door`) for jobs: rows are read with
``JobDB.states`` (``FOR UPDATE`` where the engine has concurrent writers), each requested step
is checked by ``JOB_MACHINE`` from the state read, ``JobDB.apply`` writes them with UPDATEs
conditional on it, and the hooks ``JOB_MACHINE`` declares run here for every caller:

- ``end_time`` (before): the end time, written with the change on entering an ended state;
- ``dequeue`` (after): leaving Waiting takes the jobs out of their task queues (except those
  the caller names in ``params["claimed"]``: the matcher's claim removed them already);
- ``enqueue`` (after): entering Waiting puts the jobs into their task queues; requirements
  the caller has (``params["queue"]``: job ID -> (Requirements, priority)) or descriptions it
  has loaded (``params["descriptions"]``) are used, the rest are read and computed here;
- ``history`` (after): one history row per applied step, with its source.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

from ctaprod.core.errors import NotFound
from ctaprod.core.job_states import JOB_MACHINE, JobStatus
from ctaprod.core.jobs import JobDescription
from ctaprod.core.matching import Requirements
from ctaprod.core.statemachine import Change, Transition, TransitionResult
from ctaprod.db.jobs import JobState
from ctaprod.logic import input_data
from ctaprod.logic.context import Context
from ctaprod.logic.door import Door, HookContext, change_states
from ctaprod.logic.trans_tasks import mirror_jobs

J = JobStatus
JobResult = TransitionResult[JobStatus, JobState]
JobDecide = Callable[[JobState], Sequence[Change[JobStatus]] | None]


class Step(Change[JobStatus]):
    """A requested job step: target, minor status, application status (None: unchanged) and
    other columns to write with it."""

    def __init__(
        self,
        target: JobStatus,
        minor_status: str = "",
        application_status: str | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        merged = dict(values or {})
        if application_status is not None:
            merged["application_status"] = application_status
        super().__init__(target, minor_status, merged or None)


def transition_jobs(
    ctx: Context,
    conn: Connection,
    job_ids: Sequence[int],
    decide: JobDecide,
    source: str,
    *,
    strict: bool = True,
    known: Mapping[int, JobState] | None = None,
    params: Mapping[str, Any] | None = None,
) -> JobResult:
    """Apply ``decide(state)`` to each job through the job door, in ``conn``'s transaction.

    ``decide`` returns the steps for a job (or None to leave it alone). With ``strict``, a
    missing job or an illegal step raises before anything is written (the caller's
    transaction rolls back); otherwise they are reported in the result's ``rejected``.
    ``known`` passes states the caller has just read (and locked) in this transaction.
    Changes whose conditional UPDATE matched nothing are in the result's ``missed``.
    """
    return change_states(
        job_door(ctx),
        conn,
        job_ids,
        decide,
        source=source,
        now=ctx.clock(),
        strict=strict,
        known=known,
        params=params,
    )


def job_door(ctx: Context) -> Door[JobStatus, JobState]:
    """The door of jobs on this context's database classes."""

    def dequeue(conn: Connection, steps: Sequence[Transition[J]], h: HookContext[JobState]) -> None:
        claimed = h.params.get("claimed", ())
        ids = [t.ident for t in steps if t.ident not in claimed]
        if ids:
            ctx.queues.dequeue(conn, ids)

    def enqueue(conn: Connection, steps: Sequence[Transition[J]], h: HookContext[JobState]) -> None:
        enqueue_jobs(ctx, conn, [t.ident for t in steps], h)

    def history(conn: Connection, steps: Sequence[Transition[J]], h: HookContext[JobState]) -> None:
        sources: Mapping[int, str] = h.params.get("sources", {})  # per job, when they differ
        ctx.jobs.add_history(
            conn,
            (
                {
                    "job_id": t.ident,
                    "status": t.new.value,
                    "minor_status": t.reason,
                    "application_status": t.values.get("application_status") or "",
                    "time": h.now,
                    "source": sources.get(t.ident, h.source),
                }
                for t in steps
            ),
        )

    return Door(
        JOB_MACHINE,
        ctx.jobs.states,
        lambda s: s.status,
        ctx.jobs.apply,
        before={"end_time": lambda t, now: {"end_time": now}},
        after={
            "dequeue": dequeue,
            "enqueue": enqueue,
            "history": history,
            "task": lambda conn, steps, h: mirror_jobs(ctx, conn, steps, h),
        },
    )


def enqueue_jobs(
    ctx: Context, conn: Connection, job_ids: Sequence[int], h: HookContext[JobState]
) -> None:
    """Put jobs that entered Waiting into their task queues (the ``enqueue`` hook)."""
    queue: dict[int, tuple[Requirements, int]] = {
        j: q for j in job_ids if (q := h.params.get("queue", {}).get(j)) is not None
    }
    rest = [j for j in job_ids if j not in queue]
    if rest:
        descs = load_descriptions(ctx, conn, rest, h.params.get("descriptions", {}))
        states = h.states
        reqs = input_data.job_requirements(
            ctx,
            [(descs[j], states[j].owner, states[j].owner_group) for j in rest],
            strict=False,
            conn=conn,
        )
        queue.update({j: (r, descs[j].priority) for j, r in zip(rest, reqs, strict=True)})
    tq_ids = ctx.queues.ensure_queues(conn, [r for r, _ in queue.values()], h.now)
    ctx.queues.enqueue(
        conn,
        [{"job_id": j, "tq_id": tq_ids[r.key()], "priority": p} for j, (r, p) in queue.items()],
    )


def load_descriptions(
    ctx: Context,
    conn: Connection,
    job_ids: Sequence[int],
    known: Mapping[int, JobDescription] | None = None,
) -> dict[int, JobDescription]:
    """The descriptions of jobs (one SELECT for those not in ``known``)."""
    out = {j: d for j in job_ids if known and (d := known.get(j)) is not None}
    missing = [j for j in job_ids if j not in out]
    if missing:
        texts = ctx.jobs.descriptions(conn, missing)
        lost = [j for j in missing if j not in texts]
        if lost:
            raise NotFound(f"no description for job {lost[0]}")
        out.update({j: JobDescription.model_validate_json(t) for j, t in texts.items()})
    return out
