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
and keeps the job out of the batch, or waits and then sees the new status. A transaction
the database aborts to break a deadlock (agents of one partition running twice) is retried.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Connection, RowMapping
from sqlalchemy.exc import DBAPIError

from ctaprod.core.job_states import JobStatus
from ctaprod.core.pilot_states import PILOT_ALIVE
from ctaprod.core.statemachine import Change
from ctaprod.db.engine import is_deadlock
from ctaprod.db.jobs import JobState
from ctaprod.logic.context import Context
from ctaprod.logic.job_status import Step, transition_jobs
from ctaprod.logic.jobs import reschedule_jobs
from ctaprod.logic.liveness import heard_since

J = JobStatus
T = TypeVar("T")
SOURCE = "StalledJobAgent"
PILOT_GONE = "Stalled: pilot gone"
NEVER = datetime(1970, 1, 1, tzinfo=UTC)


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


Part = dict[str, Any]


def check_stalled_jobs(
    ctx: Context,
    *,
    limit: int = 1000,
    replica: int = 0,
    replicas: int = 1,
    agent_start: datetime | None = None,
) -> StalledReport:
    """One pass of stalled-job detection over this replica's share of the jobs.

    Silence is counted from the last heartbeat, but never from before the service could
    hear heartbeats again: the start of the current continuous API server up period
    (:mod:`ctaprod.logic.liveness`) or ``agent_start``, whichever is later."""
    part: Part = {"limit": limit, "replica": replica, "replicas": replicas, "lock": True}
    heard = heard_since(ctx, agent_start=agent_start)
    report = StalledReport()
    for step in (_matched_timeouts, _mark_stalled, _settle_stalled, _fail_completing):
        done = in_transaction(ctx, partial(step, ctx, part, heard))
        for name, value in vars(done).items():
            setattr(report, name, getattr(report, name) + value)
    return report


def silent_before(heard: datetime | None, now: datetime, window: float) -> datetime | None:
    """Jobs whose last sign of life is before this are silent for ``window`` seconds; None
    when the service has not been able to hear them for that long (nobody is silent yet)."""
    cutoff = now - timedelta(seconds=window)
    return None if heard is not None and heard > cutoff else cutoff


def _matched_timeouts(
    ctx: Context, part: Part, heard: datetime | None, conn: Connection
) -> StalledReport:
    timeout = ctx.settings.jobs.matched_timeout
    cutoff = silent_before(heard, ctx.clock(), timeout)
    if cutoff is None:
        return StalledReport()
    rows = ctx.jobs.matched_unstarted(conn, cutoff, **part)
    outcome = reschedule_jobs(
        ctx,
        None,
        _ids(rows),
        f"Matched but not started within {timeout:g} s",
        strict=False,
        conn=conn,
    )
    return StalledReport(
        matched_rescheduled=_count(outcome, J.WAITING), failed=_count(outcome, J.FAILED)
    )


def _mark_stalled(
    ctx: Context, part: Part, heard: datetime | None, conn: Connection
) -> StalledReport:
    now = ctx.clock()
    cutoff = silent_before(heard, now, ctx.settings.jobs.stalled_after)
    if cutoff is None:
        return StalledReport()
    rows = [
        *ctx.jobs.silent_jobs(conn, J.RUNNING, cutoff, **part),
        *ctx.jobs.matched_silent(conn, cutoff, **part),
    ]
    silence = {int(r["job_id"]): _silent_for(r, now) for r in rows}
    stalled = _move(
        ctx,
        conn,
        silence,
        (J.RUNNING, J.MATCHED),
        lambda jid: Step(J.STALLED, f"No heartbeat for {silence[jid]} s"),
    )
    return StalledReport(stalled=stalled)


def _settle_stalled(
    ctx: Context, part: Part, heard: datetime | None, conn: Connection
) -> StalledReport:
    s = ctx.settings.jobs
    now = ctx.clock()
    # Not heard for long enough: only the jobs whose pilot is gone are settled.
    cutoff = silent_before(heard, now, s.failed_after) or NEVER
    rows = ctx.jobs.stalled_to_settle(conn, cutoff, [p.value for p in PILOT_ALIVE], **part)
    gone = [int(r["job_id"]) for r in rows if not r["pilot_alive"]]
    silent = {int(r["job_id"]): _silent_for(r, now) for r in rows if r["pilot_alive"]}
    report = StalledReport()
    if s.stalled_policy == "reschedule":
        for ids, reason in (
            (gone, PILOT_GONE),
            (list(silent), f"Stalled: no heartbeat for more than {s.failed_after:g} s"),
        ):
            outcome = reschedule_jobs(ctx, None, ids, reason, strict=False, conn=conn)
            report.rescheduled += _count(outcome, J.WAITING)
            report.failed += _count(outcome, J.FAILED)
        return report
    report.failed += _move(
        ctx,
        conn,
        dict.fromkeys(gone, 0),
        (J.STALLED,),
        lambda jid: Step(J.FAILED, PILOT_GONE),
    )
    report.failed += _move(
        ctx,
        conn,
        silent,
        (J.STALLED,),
        lambda jid: Step(J.FAILED, f"Stalled: no heartbeat for {silent[jid]} s"),
    )
    return report


def _fail_completing(
    ctx: Context, part: Part, heard: datetime | None, conn: Connection
) -> StalledReport:
    now = ctx.clock()
    cutoff = silent_before(heard, now, ctx.settings.jobs.failed_after)
    if cutoff is None:
        return StalledReport()
    silence = {
        int(r["job_id"]): _silent_for(r, now)
        for r in ctx.jobs.silent_jobs(conn, J.COMPLETING, cutoff, **part)
    }
    failed = _move(
        ctx,
        conn,
        silence,
        (J.COMPLETING,),
        lambda jid: Step(J.FAILED, f"Stuck in Completing: no news for {silence[jid]} s"),
    )
    return StalledReport(completing_failed=failed)


def in_transaction(ctx: Context, work: Callable[[Connection], T], attempts: int = 4) -> T:
    """``work(conn)`` in a write transaction, run again if the engine chose it as a deadlock
    victim (two agents locking overlapping rows on MariaDB/PostgreSQL)."""
    for attempt in range(1, attempts + 1):
        try:
            with ctx.db.write() as conn:
                return work(conn)
        except DBAPIError as exc:
            if attempt == attempts or not is_deadlock(exc):
                raise
            time.sleep(random.uniform(0.01, 0.05) * attempt)
    raise AssertionError("unreachable")


def _count(outcome: Mapping[int, JobStatus], status: JobStatus) -> int:
    return sum(1 for st in outcome.values() if st is status)


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
    step: Callable[[int], Change[JobStatus]],
) -> int:
    """Apply ``step(job_id)`` to the jobs still in one of ``sources``; returns how many."""

    def decide(state: JobState) -> list[Change[JobStatus]] | None:
        return [step(state.job_id)] if state.status in sources else None

    if not jobs:
        return 0
    result = transition_jobs(ctx, conn, list(jobs), decide, SOURCE, strict=False)
    return len(result.applied)
