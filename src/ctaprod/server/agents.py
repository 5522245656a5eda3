"""Run the agents: as ``ctaprod agents`` (a process of its own) or inside ``ctaprod up``.

Signals are the caller's business: pass a ``stop`` event and set it from a SIGTERM/SIGINT
handler (Ctrl-C also ends a foreground run). The pilots of this machine's Local CEs are
processes of this machine: when the agents that submit them stop, they are cancelled
(:func:`stop_local_pilots`), else they would outlive the service and retry against it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from ctaprod.agents.registry import build_agents
from ctaprod.agents.runner import Heartbeat, HeartbeatSink, Runner
from ctaprod.api.deps import Services
from ctaprod.core.settings import Settings
from ctaprod.db.agents import AgentDB
from ctaprod.logic.context import Context
from ctaprod.server.services import build_services

log = logging.getLogger("ctaprod.server.agents")


def database_heartbeats(ctx: Context) -> HeartbeatSink:
    """A heartbeat sink writing the ``agent_heartbeats`` rows (one short transaction each)."""
    table = AgentDB()

    def record(beat: Heartbeat) -> None:
        with ctx.db.write() as conn:
            table.record_cycle(conn, beat.name, beat.replica, beat.host, beat.time, beat.error)

    return record


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
    return Runner(
        specs,
        replica=replica,
        replicas=replicas,
        heartbeat=database_heartbeats(services.ctx),
        stop=stop,
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
    cancel_local_pilots: bool = False,
) -> None:
    """Run the agents until ``stop`` is set (``once``: one cycle each, then return).

    ``services`` lets an embedding process (``ctaprod up``) share its database engine and
    matcher; by default they are built from ``settings``. ``cancel_local_pilots``: when the
    pilot factory ran here (not ``once``), cancel the Local CE pilots still alive at the end.
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
        try:
            runner.run(once=once)
        finally:
            factory = any(spec.name == "pilot_factory" for spec in runner.specs)
            if cancel_local_pilots and factory and not once:
                stop_local_pilots(svc)
    finally:
        if own:
            svc.ctx.db.dispose()


def stop_local_pilots(services: Services) -> int:
    """Cancel the pilots this machine's Local CEs still run (when ``up`` or ``agents``
    stops); how many were cancelled."""
    from ctaprod.agents.pilot_factory import ComputingElements
    from ctaprod.core.pilot_states import PILOT_ALIVE

    settings = services.ctx.settings
    ces = ComputingElements(settings)
    cancelled = 0
    for name, queue in settings.queues.items():
        if queue.ce_type != "local":
            continue
        with services.ctx.db.read() as conn:
            rows = services.ctx.pilots.search(
                conn, statuses=[s.value for s in PILOT_ALIVE], queue=name, limit=100_000
            )
        refs = [r["ce_ref"] for r in rows if r["ce_ref"]]
        if refs:
            ces.get(name).cancel(refs)
            cancelled += len(refs)
    if cancelled:
        print(f"ctaprod: cancelled {cancelled} local pilot(s)")
    return cancelled
