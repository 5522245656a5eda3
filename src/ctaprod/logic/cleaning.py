"""Job cleaning: forget finished jobs past their retention, then what only they used.

Done jobs go after ``cleaning.done_retention_days``, Failed and Killed ones after
``failed_retention_days``, Deleted ones after ``deleted_retention_days`` (counted from their
last status change). Their rows, history, parameters and sandbox references are deleted in
one transaction per batch; sandboxes no job refers to any more are then removed (the stored
archive too when no other owner has the same content), and empty task queues are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import Connection

from ctaprod.core.job_states import JobStatus
from ctaprod.logic.context import Context
from ctaprod.logic.matcher import repair_queue_counters
from ctaprod.logic.sandboxes import remove_unused
from ctaprod.logic.stalled import in_transaction

J = JobStatus


@dataclass
class CleaningReport:
    jobs: int = 0
    sandboxes: int = 0
    task_queues: int = 0
    queue_counters_repaired: int = 0  # drifted task queue counters (a bug if ever > 0)

    @property
    def total(self) -> int:
        return self.jobs + self.sandboxes + self.task_queues


def retention_rules(ctx: Context) -> list[tuple[tuple[JobStatus, ...], timedelta]]:
    """(statuses, retention) pairs from the settings."""
    c = ctx.settings.cleaning
    return [
        ((J.DONE,), timedelta(days=c.done_retention_days)),
        ((J.FAILED, J.KILLED), timedelta(days=c.failed_retention_days)),
        ((J.DELETED,), timedelta(days=c.deleted_retention_days)),
    ]


def remove_old_jobs(ctx: Context, *, limit: int = 1000, replica: int = 0, replicas: int = 1) -> int:
    """Delete up to ``limit`` jobs per retention rule that are past it; returns how many."""
    removed = 0
    for statuses, retention in retention_rules(ctx):
        part = {"limit": limit, "replica": replica, "replicas": replicas}
        removed += in_transaction(
            ctx, partial(_remove, ctx, statuses, ctx.clock() - retention, part)
        )
    return removed


def _remove(
    ctx: Context,
    statuses: tuple[JobStatus, ...],
    cutoff: datetime,
    part: dict[str, int],
    conn: Connection,
) -> int:
    ids = ctx.jobs.finished_before(conn, statuses, cutoff, lock=True, **part)
    if not ids:
        return 0
    ctx.sandboxes.unassign_jobs(conn, ids)
    # No finished job is in a task queue: the job door's dequeue hook took it out when it left
    # Waiting.
    return ctx.jobs.delete_jobs(conn, ids)


def clean(
    ctx: Context, *, limit: int = 1000, replica: int = 0, replicas: int = 1
) -> CleaningReport:
    """One cleaning pass. Sandboxes and task queues are global: only replica 0 does them."""
    report = CleaningReport(
        jobs=remove_old_jobs(ctx, limit=limit, replica=replica, replicas=replicas)
    )
    if replica == 0:
        report.sandboxes = remove_unused(ctx, limit)
        with ctx.db.write() as conn:
            report.task_queues = ctx.queues.drop_empty(conn)
        report.queue_counters_repaired = len(repair_queue_counters(ctx))
    return report
