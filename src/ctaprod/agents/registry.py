"""The agents of a ctaprod installation, built from the process's services and settings.

Intervals and ``enabled`` come from ``settings.agent(name)``; an agent named explicitly runs
even if the configuration disables it (that is how an operator runs one by hand).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from ctaprod.agents.cleaning import JobCleaningAgent
from ctaprod.agents.pilot_factory import (
    PILOT_COMMAND,
    ComputingElements,
    PilotFactory,
    PilotStatusAgent,
)
from ctaprod.agents.productions import ProductionAgent
from ctaprod.agents.request_executor import RequestExecutorAgent
from ctaprod.agents.runner import AgentSpec, RunOnce
from ctaprod.agents.stalled import StalledJobsAgent
from ctaprod.agents.transformations import (
    TaskCreationAgent,
    TaskSubmissionAgent,
    TransformationRecoveryAgent,
    TransformationTriggerAgent,
)
from ctaprod.core.errors import InvalidInput
from ctaprod.logic.auth import TokenService
from ctaprod.logic.context import Context
from ctaprod.logic.matcher import Matcher

AGENT_NAMES = (
    "pilot_factory",
    "pilot_status",
    "stalled_jobs",
    "job_cleaning",
    "request_executor",
    "transformation_trigger",
    "task_creation",
    "task_submission",
    "transformation_recovery",
    "production",
)


class AgentServices(Protocol):
    """What the agents need from the composition root (``server.services.Services`` fits)."""

    ctx: Context
    matcher: Matcher


def build_agents(
    services: AgentServices,
    tokens: TokenService,
    *,
    names: Sequence[str] | None = None,
    ces: ComputingElements | None = None,
    pilot_command: Sequence[str] = PILOT_COMMAND,
) -> list[AgentSpec]:
    """The agents to run: ``names`` (any order) or all enabled ones, in a fixed order."""
    settings = services.ctx.settings
    if names is not None:
        unknown = sorted(set(names) - set(AGENT_NAMES))
        if unknown:
            raise InvalidInput(
                f"unknown agent{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                f"known: {', '.join(AGENT_NAMES)}"
            )
    ces = ces if ces is not None else ComputingElements(settings)
    ctx = services.ctx
    # Agents that wake others: tasks made are submitted at once, not a cycle later.
    wakes = {"task_creation": threading.Event(), "task_submission": threading.Event()}
    makers: dict[str, Callable[[], RunOnce]] = {
        "pilot_factory": lambda: (
            PilotFactory(ctx, services.matcher, tokens, ces, command=pilot_command).run_once
        ),
        "pilot_status": lambda: PilotStatusAgent(ctx, ces).run_once,
        "stalled_jobs": lambda: StalledJobsAgent(ctx).run_once,
        "job_cleaning": lambda: JobCleaningAgent(ctx).run_once,
        "request_executor": lambda: RequestExecutorAgent(ctx).run_once,
        "transformation_trigger": lambda: (
            TransformationTriggerAgent(ctx, wakes["task_creation"]).run_once
        ),
        "task_creation": lambda: TaskCreationAgent(ctx, wakes["task_submission"]).run_once,
        "task_submission": lambda: TaskSubmissionAgent(ctx).run_once,
        "transformation_recovery": lambda: TransformationRecoveryAgent(ctx).run_once,
        "production": lambda: ProductionAgent(ctx).run_once,
    }
    specs = []
    for name in AGENT_NAMES:
        conf = settings.agent(name)
        if names is None and not conf.enabled:
            continue
        if names is not None and name not in names:
            continue
        specs.append(AgentSpec(name, makers[name](), conf.interval, wakes.get(name)))
    return specs
