"""The pilot factory and pilot-status agents, and the computing elements they share.

The factory submits pilots to the queues where matching jobs wait (see
:mod:`ctaprod.logic.pilots`); the status agent follows them in their batch systems. Both
work on the queues of ``settings.queues`` that belong to their replica (by queue name), and
use one computing element object per queue, whose private directory is
``<state_dir>/pilots/<queue>``.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import partial
from pathlib import Path

from ctaprod.agents.runner import AgentContext
from ctaprod.core.settings import QueueConfig, Settings
from ctaprod.logic.auth import TokenService
from ctaprod.logic.context import Context
from ctaprod.logic.matcher import Matcher
from ctaprod.logic.pilots import (
    LOST_AFTER,
    new_stamp,
    pilot_environment,
    poll_pilots,
    queue_demand,
    submit_pilots,
)
from ctaprod.resources.computing import ComputingElement, PilotSpec, create_computing_element

log = logging.getLogger("ctaprod.agents.pilots")

PILOT_COMMAND = (sys.executable, "-m", "ctaprod.pilot")
PILOT_USER, PILOT_GROUP = "pilot", "ctao_pilot"


class AgentError(RuntimeError):
    """Some queues failed in a cycle (the others were served); the message names them."""


class ComputingElements:
    """The computing element of each configured queue, built on first use and kept."""

    def __init__(
        self,
        settings: Settings,
        factory: Callable[[str, QueueConfig, Path], ComputingElement] = create_computing_element,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self._ces: dict[str, ComputingElement] = {}
        self._lock = threading.Lock()

    def work_dir(self, name: str) -> Path:
        return self.settings.state_dir / "pilots" / name

    def get(self, name: str) -> ComputingElement:
        with self._lock:
            ce = self._ces.get(name)
            if ce is None:
                ce = self.factory(name, self.settings.queues[name], self.work_dir(name))
                self._ces[name] = ce
            return ce


class PilotFactory:
    """Each cycle tops up every queue of this replica with the pilots its demand calls for."""

    name = "pilot_factory"

    def __init__(
        self,
        ctx: Context,
        matcher: Matcher,
        tokens: TokenService,
        ces: ComputingElements,
        *,
        command: Sequence[str] = PILOT_COMMAND,
    ) -> None:
        self.ctx = ctx
        self.matcher = matcher
        self.tokens = tokens
        self.ces = ces
        self.command = list(command)

    def credential_for(self, queue: QueueConfig, stamp: str) -> str:
        """The registration credential of the pilot ``stamp``: good for registering that
        pilot record once (``submit_pilots`` writes it), within the queue's
        ``max_queued_hours``; the pilot exchanges it for its session token."""
        lifetime = timedelta(hours=queue.max_queued_hours)
        return self.tokens.issue_pilot_credential(PILOT_USER, PILOT_GROUP, stamp, lifetime)

    def spec_for(self, name: str, queue: QueueConfig, stamp: str) -> PilotSpec:
        """What the computing element runs for one pilot of queue ``name``; its credential
        goes apart from its environment (the CE keeps it out of the payloads' reach)."""
        root = str(queue.options.get("pilot_work_dir", ""))
        if queue.ce_type.lower() == "local":
            # The pilot's jobs go under pilot_work_dir when set (ctaprod up keeps them out
            # of the state directory), else next to its CE files.
            base = Path(root) if root else self.ces.work_dir(name)
            work_dir = str(base.absolute() / stamp)
        else:
            work_dir = root
        env = pilot_environment(self.ctx, name, queue, stamp, work_dir)
        return PilotSpec(
            stamp=stamp,
            argv=list(self.command),
            env=env,
            workdir_hint=work_dir,
            credential=self.credential_for(queue, stamp),
        )

    def run_once(self, actx: AgentContext) -> int:
        submitted, errors = 0, []
        for name, queue in sorted(self.ctx.settings.queues.items()):
            if actx.stopping:
                break
            if not actx.mine_name(name):
                continue
            try:
                demand = queue_demand(self.ctx, self.matcher, name, queue)
                if demand.to_submit == 0:
                    continue
                stamps = [new_stamp() for _ in range(demand.to_submit)]
                ids = submit_pilots(
                    self.ctx,
                    name,
                    queue,
                    self.ces.get(name),
                    stamps,
                    partial(self.spec_for, name, queue),
                )
            except Exception as exc:
                log.exception("pilot factory: queue %s failed", name)
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            submitted += len(ids)
            log.info(
                "queue %s: %d pilots submitted (%d jobs and %d pilots waiting, %d pilots in all)",
                name,
                len(ids),
                demand.jobs_waiting,
                demand.pilots_waiting,
                demand.pilots_total,
            )
        if errors:
            raise AgentError("; ".join(errors))
        return submitted


class PilotStatusAgent:
    """Each cycle follows the live pilots of this replica's queues in their batch systems."""

    name = "pilot_status"

    def __init__(
        self, ctx: Context, ces: ComputingElements, *, lost_after: float = LOST_AFTER
    ) -> None:
        self.ctx = ctx
        self.ces = ces
        self.lost_after = lost_after

    def run_once(self, actx: AgentContext) -> int:
        changed, errors = 0, []
        for name, queue in sorted(self.ctx.settings.queues.items()):
            if actx.stopping:
                break
            if not actx.mine_name(name):
                continue
            try:
                report = poll_pilots(
                    self.ctx,
                    name,
                    queue,
                    self.ces.get(name),
                    lost_after=self.lost_after,
                )
            except Exception as exc:
                log.exception("pilot status: queue %s failed", name)
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            changed += report.changed + report.logs_saved
            if report.changed or report.logs_saved:
                log.info(
                    "queue %s: %d pilots checked, %d changed, %d batch logs saved",
                    name,
                    report.checked,
                    report.changed,
                    report.logs_saved,
                )
        if errors:
            raise AgentError("; ".join(errors))
        return changed
