"""The job-cleaning agent: a thin ``run_once`` over :mod:`ctaprod.logic.cleaning`."""

from __future__ import annotations

import logging

from ctaprod.agents.runner import AgentContext
from ctaprod.logic.cleaning import clean
from ctaprod.logic.context import Context

log = logging.getLogger("ctaprod.agents.cleaning")


class JobCleaningAgent:
    """Each cycle removes up to ``limit`` expired jobs per retention rule, then what they used."""

    name = "job_cleaning"

    def __init__(self, ctx: Context, *, limit: int = 1000) -> None:
        self.ctx = ctx
        self.limit = limit

    def run_once(self, actx: AgentContext) -> int:
        report = clean(self.ctx, limit=self.limit, replica=actx.replica, replicas=actx.replicas)
        if report.total:
            log.info(
                "cleaning: %d jobs, %d sandboxes, %d empty task queues removed",
                report.jobs,
                report.sandboxes,
                report.task_queues,
            )
        return report.total
