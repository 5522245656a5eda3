"""The transformation agents: thin ``run_once`` bodies over :mod:`ctaprod.logic.trans_work`.

- ``transformation_trigger``: attaches new and changed catalog files to the transformations
  whose input query they match, from the catalog's event outbox (logic.trans_trigger);
- ``task_creation``: groups Unused files into tasks (MCSimulation: run numbers); a replica
  takes the transformations of its share, and holds each one's row for its turn;
- ``task_submission``: turns Created tasks into jobs (SKIP LOCKED: replicas never submit a
  task twice);
- ``transformation_recovery``: reschedules the failed jobs of live tasks (within the job
  system's limit), completes transformations whose work is over, cleans those in Cleaning.

Each can wake the next (a shared event): tasks made are submitted without waiting a cycle.
"""

from __future__ import annotations

import logging
import threading

from ctaprod.agents.runner import AgentContext
from ctaprod.logic import events as E
from ctaprod.logic import trans_work as W
from ctaprod.logic.context import Context
from ctaprod.logic.trans_trigger import Trigger, ensure_consumer

log = logging.getLogger("ctaprod.agents.transformations")


class TransformationTriggerAgent:
    """Attaches files to transformations from the catalog's events (every quarter second by
    default; an idle poll is two indexed reads), then wakes the task creation. Prunes the
    events every consumer has applied, now and then."""

    name = "transformation_trigger"
    PRUNE_EVERY = 120  # cycles

    def __init__(self, ctx: Context, then: threading.Event | None = None) -> None:
        self.ctx = ctx
        self.then = then
        self.trigger = Trigger(ctx)
        self.cycles = 0
        ensure_consumer(ctx)

    def run_once(self, actx: AgentContext) -> int:
        done = self.trigger.run()
        if done and self.then is not None:
            self.then.set()
        self.cycles += 1
        if self.cycles % self.PRUNE_EVERY == 1 and actx.replica == 0:
            E.prune(self.ctx, max_batches=10)
        return done


class TaskCreationAgent:
    name = "task_creation"

    def __init__(self, ctx: Context, then: threading.Event | None = None) -> None:
        self.ctx = ctx
        self.then = then

    def run_once(self, actx: AgentContext) -> int:
        made = W.make_tasks(self.ctx, mine=actx.mine)
        if made and self.then is not None:
            self.then.set()
        return made


class TaskSubmissionAgent:
    name = "task_submission"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def run_once(self, actx: AgentContext) -> int:
        total = 0
        while not actx.stopping:  # drain: a turn takes TASKS_PER_TURN tasks
            n = W.submit_tasks(self.ctx)
            total += n
            if n < W.TASKS_PER_TURN:
                break
        return total


class TransformationRecoveryAgent:
    name = "transformation_recovery"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def run_once(self, actx: AgentContext) -> int:
        recovered = W.recover_tasks(self.ctx) if actx.replica == 0 else W.Recovery()
        completed = W.complete(self.ctx, mine=actx.mine)
        cleaned = W.clean(self.ctx, mine=actx.mine)
        if recovered.total or completed or cleaned:
            log.info(
                "transformations: %s; %d completed, %d tasks cleaned", recovered, completed, cleaned
            )
        return recovered.total + completed + cleaned
