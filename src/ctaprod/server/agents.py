"""Run the agents: as ``ctaprod agents`` (a process of its own) or inside ``ctaprod up``.

Signals are the caller's business: pass a ``stop`` event and set it from a SIGTERM/SIGINT
handler (Ctrl-C also ends a foreground run).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ctaprod.agents.registry import build_agents
from ctaprod.agents.runner import (
    AgentCycleError,
    Heartbeat,
    HeartbeatSink,
    LivenessSink,
    LivePeers,
    Runner,
)
from ctaprod.api.deps import Services
from ctaprod.core.settings import Settings
from ctaprod.db.agents import AgentDB
from ctaprod.logic.context import Context
from ctaprod.server.services import build_services

log = logging.getLogger("ctaprod.server.agents")
__all__ = ["AgentCycleError", "agent_heartbeats", "build_runner", "run_agents"]


def database_heartbeats(ctx: Context) -> HeartbeatSink:
    """A heartbeat sink writing the ``agent_heartbeats`` rows (one short transaction each)."""
    table = AgentDB()

    def record(beat: Heartbeat) -> None:
        with ctx.db.write() as conn:
            table.record_cycle(conn, beat.name, beat.replica, beat.host, beat.time, beat.error)

    return record


def database_liveness(ctx: Context) -> tuple[LivenessSink, LivePeers]:
    """The liveness beat writer and the live-replica reader on ``agent_heartbeats``: a
    replica silent for ``liveness.missed_beats`` beats is dead."""
    table = AgentDB()
    s = ctx.settings.liveness

    def beat(names: Sequence[str], replica: int, host: str, now: datetime, alive: bool) -> None:
        with ctx.db.write() as conn:
            table.beat(conn, names, replica, host, now, alive)

    def peers(name: str) -> list[int]:
        since = datetime.now(UTC) - timedelta(seconds=s.agent_beat_seconds * s.missed_beats)
        with ctx.db.read() as conn:
            return table.live_replicas(conn, name, since)

    return beat, peers


def agent_heartbeats(ctx: Context) -> list[Mapping[str, Any]]:
    """The heartbeat rows of all agents (name, replica, host, last_cycle, cycles, last_error)."""
    with ctx.db.read() as conn:
        return [dict(r) for r in AgentDB().heartbeats(conn)]


def build_runner(
    services: Services,
    names: Sequence[str] | None = None,
    *,
    replica: int = 0,
    replicas: int = 1,
    stop: threading.Event | None = None,
) -> Runner:
    """A runner for the named agents (default: all enabled) writing heartbeats to the DB."""
    specs = build_agents(services, services.tokens, names=names)
    beat, peers = database_liveness(services.ctx)
    return Runner(
        specs,
        replica=replica,
        replicas=replicas,
        heartbeat=database_heartbeats(services.ctx),
        stop=stop,
        liveness=beat,
        peers=peers,
        beat_interval=services.ctx.settings.liveness.agent_beat_seconds,
    )


def run_agents(
    settings: Settings,
    names: Sequence[str] | None = None,
    *,
    once: bool = False,
    replica: int = 0,
    replicas: int = 1,
    stop: threading.Event | None = None,
    services: Services | None = None,
) -> None:
    """Run the agents until ``stop`` is set (``once``: one cycle each, then return, raising
    :class:`AgentCycleError` if a cycle failed).

    ``services`` lets an embedding process (``ctaprod up``) share its database engine and
    matcher; by default they are built from ``settings``.
    """
    own = services is None
    svc = build_services(settings) if services is None else services
    try:
        runner = build_runner(svc, names, replica=replica, replicas=replicas, stop=stop)
        log.info(
            "agents %s, replica %d of %d%s",
            ", ".join(s.name for s in runner.specs) or "(none)",
            replica,
            replicas,
            ", once" if once else "",
        )
        runner.run(once=once)
    finally:
        if own:
            svc.ctx.db.dispose()
