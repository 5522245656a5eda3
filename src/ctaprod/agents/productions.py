"""The production agent: a thin ``run_once`` over :func:`ctaprod.logic.productions.advance`.

Each pass declares complete the input of the steps whose parents' transformations are all
Completed (once the parents' last outputs have reached the transformations), completes the
productions whose steps are all Completed, and marks Cleaned those whose steps all are. Replica
0 only: a pass is a few reads per production, and the marks it keeps are per process.
"""

from __future__ import annotations

import logging

from ctaprod.agents.runner import AgentContext
from ctaprod.logic import productions as P
from ctaprod.logic.context import Context

log = logging.getLogger("ctaprod.agents.productions")


class ProductionAgent:
    name = "production"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # Per transformation: the last catalog event id when it was first seen Completed.
        self.marks: dict[int, int] = {}

    def run_once(self, actx: AgentContext) -> int:
        if actx.replica != 0:
            return 0
        changes = P.advance(self.ctx, self.marks)
        if changes:
            log.info("productions: %d changes", changes)
        return changes
