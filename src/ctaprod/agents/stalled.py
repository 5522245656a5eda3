"""The stalled-jobs agent: a thin ``run_once`` over :mod:`ctaprod.logic.stalled`."""

from __future__ import annotations

import logging

from ctaprod.agents.runner import AgentContext
from ctaprod.logic.context import Context
from ctaprod.logic.stalled import check_stalled_jobs

log = logging.getLogger("ctaprod.agents.stalled")


class StalledJobsAgent:
    """Each cycle settles up to ``limit`` jobs per kind of problem, in this replica's share."""

    name = "stalled_jobs"

    def __init__(self, ctx: Context, *, limit: int = 1000) -> None:
        self.ctx = ctx
        self.limit = limit
        # Jobs cannot have been heard before this agent ran: silence counts from here at most.
        self.started = ctx.clock()

    def run_once(self, actx: AgentContext) -> int:
        report = check_stalled_jobs(
            self.ctx,
            limit=self.limit,
            replica=actx.replica,
            replicas=actx.replicas,
            agent_start=self.started,
        )
        if report.total:
            log.info(
                "stalled jobs: %d stalled, %d rescheduled, %d failed, %d matched but not "
                "started, %d stuck in Completing",
                report.stalled,
                report.rescheduled,
                report.failed,
                report.matched_rescheduled,
                report.completing_failed,
            )
        return report.total
