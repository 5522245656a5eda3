"""The request executor agent: a thin ``run_once`` over ``logic.requests.execute_due``."""

from __future__ import annotations

import logging
import socket

from ctaprod.agents.runner import AgentContext
from ctaprod.logic.context import Context
from ctaprod.logic.requests import execute_due

log = logging.getLogger("ctaprod.agents.request_executor")


class RequestExecutorAgent:
    """Each cycle executes up to ``limit`` due requests of this replica's share."""

    name = "request_executor"

    def __init__(self, ctx: Context, *, limit: int = 100) -> None:
        self.ctx = ctx
        self.limit = limit
        self.worker = f"{socket.gethostname()}"

    def run_once(self, actx: AgentContext) -> int:
        stats = execute_due(
            self.ctx,
            limit=self.limit,
            worker=f"{self.worker}/{actx.name}-{actx.replica}",
            replica=actx.replica,
            replicas=actx.replicas,
        )
        if stats.total:
            log.info(
                "requests: %d claimed, %d done, %d to retry, %d failed, %d canceled meanwhile, "
                "%d released after their executor went silent",
                stats.claimed,
                stats.done,
                stats.retrying,
                stats.failed,
                stats.lost,
                stats.released,
            )
        return stats.total
