"""The agent registry and ``run_agents`` (what ``ctaprod agents`` and ``ctaprod up`` run)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from ctaprod.agents.registry import AGENT_NAMES, build_agents
from ctaprod.core.errors import InvalidInput
from ctaprod.core.settings import AgentSettings
from ctaprod.server.agents import agent_heartbeats, run_agents
from tests.agents.helpers import World


def test_build_agents_from_settings(services: Any) -> None:
    settings = services.ctx.settings
    settings.agents = {
        **settings.agents,
        "stalled_jobs": AgentSettings(interval=5),
        "job_cleaning": AgentSettings(enabled=False),
    }
    specs = build_agents(services, services.tokens)
    assert [(s.name, s.interval) for s in specs] == [
        ("pilot_factory", 10),
        ("pilot_status", 30),
        ("stalled_jobs", 5),
        ("request_executor", 10),
        ("transformation_trigger", 0.25),
        ("task_creation", 5),
        ("task_submission", 5),
        ("transformation_recovery", 30),
        ("production", 10),
    ]
    named = build_agents(services, services.tokens, names=["job_cleaning", "stalled_jobs"])
    assert [s.name for s in named] == ["stalled_jobs", "job_cleaning"]  # disabled, but named
    with pytest.raises(InvalidInput, match="unknown agent nope; known: pilot_factory"):
        build_agents(services, services.tokens, names=["nope"])


def test_run_agents_once_does_the_work_and_writes_heartbeats(services: Any) -> None:
    world = World(services)
    job_id, _, _ = world.running_job()
    world.clock.advance(world.ctx.settings.jobs.stalled_after + 1)
    run_agents(world.ctx.settings, once=True, services=services, replica=0, replicas=1)
    # Silent since before the stalled-job agent started: it gets a window from the start.
    assert world.status(job_id) == "Running"
    world.clock.advance(world.ctx.settings.jobs.stalled_after + 1)
    run_agents(world.ctx.settings, ["stalled_jobs"], once=True, services=services)
    assert world.status(job_id) == "Running"  # a new agent: again from its start
    rows = agent_heartbeats(world.ctx)
    assert sorted(r["name"] for r in rows) == sorted(AGENT_NAMES)
    assert all(r["last_error"] == "" for r in rows)
    assert {r["name"]: r["cycles"] for r in rows} == {
        name: 2 if name == "stalled_jobs" else 1 for name in AGENT_NAMES
    }


def test_run_agents_builds_its_own_services(settings: Any, services: Any) -> None:
    run_agents(settings, ["job_cleaning"], once=True, replica=1, replicas=2)
    [row] = agent_heartbeats(services.ctx)
    assert (row["name"], row["replica"], row["cycles"]) == ("job_cleaning", 1, 1)


def test_run_agents_until_stopped(settings: Any, services: Any) -> None:
    settings.agents = {name: AgentSettings(interval=0.05) for name in AGENT_NAMES}
    stop = threading.Event()
    thread = threading.Thread(
        target=run_agents, args=(settings,), kwargs={"stop": stop, "services": services}
    )
    thread.start()
    deadline = time.monotonic() + 20
    while True:
        rows = agent_heartbeats(services.ctx)
        if len(rows) == len(AGENT_NAMES) and all(r["cycles"] >= 3 for r in rows):
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.05)
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert all(r["last_error"] == "" for r in agent_heartbeats(services.ctx))
