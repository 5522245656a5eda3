"""Stalled jobs: find jobs whose pilot stopped talking and settle them.

One pass, each step in its own transaction and bounded to ``limit`` jobs:

1. Matched jobs that never started (no heartbeat since the match) within
   ``jobs.matched_timeout`` are rescheduled.
2. Running jobs, and Matched jobs that did send heartbeats, silent for ``jobs.stalled_after``
   become Stalled ("No heartbeat for N s"); a heartbeat brings them back to Running.
3. Stalled jobs whose pilot is gone (Done/Failed/Aborted/Lost or unknown) or whose last
   heartbeat is older than ``jobs.failed_after`` are rescheduled or failed, per
   ``jobs.stalled_policy``.
4. Completing jobs silent for ``jobs.failed_after`` fail.

Candidates are selected inside the write transaction (row-locked, skipping locked rows, on
engines with concurrent writers), so a heartbeat racing with the agent either lands first
and keeps the job out of the batch, or waits and then sees the new status.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, RowMapping

from ctaprod.core.job_states import JobStatus
from ctaprod.core.pilot_states import PILOT_ALIVE
from ctaprod.db.jobs import JobState
from ctaprod.logic.context import Context
from ctaprod.logic.job_status import Step, transition_jobs
from ctaprod.logic.jobs import reschedule_jobs

J = JobStatus
SOURCE = "StalledJobAgent"
PILOT_GONE = "Stalled: pilot gone"


@dataclass
class StalledReport:
    """What one pass did (counts of jobs)."""

    matched_rescheduled: int = 0
    stalled: int = 0
    rescheduled: int = 0
    failed: int = 0
    completing_failed: int = 0

    @property
    def total(self) -> int:
        return (
            self.matched_rescheduled
            + self.stalled
            + self.rescheduled
            + self.failed
            + self.completing_failed
        )


def check_stalled_jobs(
    ctx: Context, *, limit: int = 1000, replica: int = 0, replicas: int = 1
) -> StalledReport:
    """One pass of stalled-job detection over this replica's share of the jobs."""
    part: dict[str, Any] = {"limit": limit, "replica": replica, "replicas": replicas, "lock": True}
    s = ctx.settings.jobs
    report = StalledReport()

    now = ctx.clock()
    with ctx.db.write() as conn:
        rows = ctx.jobs.matched_unstarted(conn, now - timedelta(seconds=s.matched_timeout), **part)
        outcome = reschedule_jobs(
            ctx,
            None,
            _ids(rows),
            f"Matched but not started within {s.matched_timeout:g} s",
            strict=False,
            conn=conn,
        )
        report.matched_rescheduled = sum(1 for st in outcome.values() if st is J.WAITING)
        report.failed += sum(1 for st in outcome.values() if st is J.FAILED)

    now = ctx.clock()
    with ctx.db.write() as conn:
        cutoff = now - timedelta(seconds=s.stalled_after)
        rows = ctx.jobs.silent_jobs(conn, J.RUNNING, cutoff, **part) + ctx.jobs.matched_silent(
            conn, cutoff, **part
        )
        silence = {int(r["job_id"]): _silent_for(r, now) for r in rows}
        report.stalled = _move(
            ctx,
            conn,
            silence,
            (J.RUNNING, J.MATCHED),
            lambda jid: Step(J.STALLED, f"No heartbeat for {silence[jid]} s"),
        )

    now = ctx.clock()
    with ctx.db.write() as conn:
        rows = ctx.jobs.stalled_to_settle(
            conn, now - timedelta(seconds=s.failed_after), [p.value for p in PILOT_ALIVE], **part
        )
        gone = [int(r["job_id"]) for r in rows if not r["pilot_alive"]]
        silent = {int(r["job_id"]): _silent_for(r, now) for r in rows if r["pilot_alive"]}
        if s.stalled_policy == "reschedule":
            for ids, reason in (
                (gone, PILOT_GONE),
                (list(silent), f"Stalled: no heartbeat for more than {s.failed_after:g} s"),
            ):
                outcome = reschedule_jobs(ctx, None, ids, reason, strict=False, conn=conn)
                report.rescheduled += sum(1 for st in outcome.values() if st is J.WAITING)
                report.failed += sum(1 for st in outcome.values() if st is J.FAILED)
        else:
            report.failed += _move(
                ctx,
                conn,
                dict.fromkeys(gone, 0),
                (J.STALLED,),
                lambda jid: Step(J.FAILED, PILOT_GONE, values={"end_time": now}),
            )
            report.failed += _move(
                ctx,
                conn,
                silent,
                (J.STALLED,),
                lambda jid: Step(
                    J.FAILED, f"Stalled: no heartbeat for {silent[jid]} s", values={"end_time": now}
                ),
            )

    now = ctx.clock()
    with ctx.db.write() as conn:
        rows = ctx.jobs.silent_jobs(
            conn, J.COMPLETING, now - timedelta(seconds=s.failed_after), **part
        )
        silence = {int(r["job_id"]): _silent_for(r, now) for r in rows}
        report.completing_failed = _move(
            ctx,
            conn,
            silence,
            (J.COMPLETING,),
            lambda jid: Step(
                J.FAILED,
                f"Stuck in Completing: no news for {silence[jid]} s",
                values={"end_time": now},
            ),
        )
    return report


def _ids(rows: Sequence[RowMapping]) -> list[int]:
    return [int(r["job_id"]) for r in rows]


def _silent_for(row: RowMapping, now: datetime) -> int:
    """Whole seconds since the job's last sign of life (heartbeat or update)."""
    times = [t for t in (row["heartbeat_time"], row["last_update"]) if t is not None]
    return max(0, int((now - max(times)).total_seconds())) if times else 0


def _move(
    ctx: Context,
    conn: Connection,
    jobs: Mapping[int, int],
    sources: Sequence[JobStatus],
    step: Callable[[int], Step],
) -> int:
    """Apply ``step(job_id)`` to the jobs still in one of ``sources``; returns how many."""
    moved = 0

    def decide(state: JobState) -> list[Step] | None:
        nonlocal moved
        if state.status not in sources:
            return None
        moved += 1
        return [step(state.job_id)]

    if jobs:
        transition_jobs(ctx, conn, list(jobs), decide, SOURCE, strict=False)
    return moved
