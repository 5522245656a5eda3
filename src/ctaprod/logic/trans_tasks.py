"""Tasks follow their jobs: the job door's ``task`` hook mirrors a job's new status onto the
transformation task that made it, in the job's transaction (no agent polls jobs).

A job that ends without success (Failed, Killed, Deleted) does not end its task here: the
recovery pass (:func:`ctaprod.logic.trans_work.recover_tasks`) reschedules a failed job within
the job system's limit (the task goes back to Waiting with it), and otherwise reconciles the
outputs the job registered before ending the task: all of them there, the task is Done;
some, they are removed from catalog and storage and the task fails (its files go back to
Unused with one more error, or to MaxReset), so that no input group ever has two outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, RowMapping

from ctaprod.core.job_states import JobStatus
from ctaprod.core.requests import RequestStatus
from ctaprod.core.statemachine import Change, Transition
from ctaprod.core.trans_states import (
    TASK_LIVE,
    TaskStatus,
    mirror_steps,
    task_status_for_job,
    task_status_for_request,
)
from ctaprod.db.jobs import JobState
from ctaprod.logic.context import Context
from ctaprod.logic.door import HookContext
from ctaprod.logic.trans_states import change_tasks

J, TK = JobStatus, TaskStatus
# Jobs that ended without success: their task waits for the recovery pass, which reschedules
# the job within the limit, or reconciles the outputs it may have registered before ending
# the task (logic.trans_work.recover_tasks).
UNSUCCESSFUL = frozenset({J.FAILED, J.KILLED, J.DELETED})


def mirror_jobs(
    ctx: Context,
    conn: Connection,
    steps: Sequence[Transition[JobStatus]],
    h: HookContext[JobState],
) -> None:
    """The job door's ``task`` hook: bring the live tasks of these jobs to their status."""
    last = {t.ident: t for t in steps}  # a job's steps come in order: the last one counts
    task_ids = ctx.trans.task_ids(conn, job_ids=list(last), statuses=[s.value for s in TASK_LIVE])
    if not task_ids:
        return
    rows = ctx.trans.task_rows(conn, task_ids)

    def decide(row: RowMapping) -> list[Change[TaskStatus]] | None:
        t = last.get(int(row["job_id"]))
        if t is None:
            return None
        if t.new in UNSUCCESSFUL:
            return None  # the recovery pass reschedules the job or reconciles the task
        return mirror_steps(TK(row["status"]), task_status_for_job(t.new))

    change_tasks(ctx, conn, task_ids, decide, source=h.source, strict=False, known=rows)


def mirror_requests(
    ctx: Context,
    conn: Connection,
    steps: Sequence[Transition[RequestStatus]],
    h: HookContext[RowMapping],
) -> None:
    """The request door's ``task`` hook: bring the live tasks of these requests (Replication
    and Removal transformations) to their status."""
    last = {t.ident: t for t in steps}
    task_ids = ctx.trans.task_ids(
        conn, request_ids=list(last), statuses=[s.value for s in TASK_LIVE]
    )
    if not task_ids:
        return
    rows = ctx.trans.task_rows(conn, task_ids)

    def decide(row: RowMapping) -> list[Change[TaskStatus]] | None:
        t = last.get(int(row["request_id"]))
        if t is None:
            return None
        steps = mirror_steps(TK(row["status"]), task_status_for_request(t.new))
        if steps and steps[-1].target in (TK.FAILED, TK.KILLED):
            why = f"request {t.ident} {t.new.value}" + (f": {t.reason}" if t.reason else "")
            steps[-1] = Change(steps[-1].target, why, values={"error": why[:1024]})
        return steps

    change_tasks(ctx, conn, task_ids, decide, source=h.source, strict=False, known=rows)
