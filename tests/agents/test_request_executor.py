"""The request executor agent: one cycle executes the due requests of its replica."""

from __future__ import annotations

from typing import Any

from ctaprod.agents.request_executor import RequestExecutorAgent
from ctaprod.agents.runner import AgentContext
from ctaprod.core.requests import RequestSpec
from ctaprod.logic import requests as L
from ctaprod.server.agents import run_agents
from tests.agents.helpers import ALICE, World


def _request(world: World) -> tuple[int, int]:
    job_id, _, ident = world.running_job()
    world.report(ident, "Completed")
    spec = RequestSpec.model_validate(
        {
            "job_id": job_id,
            "operations": [{"type": "SetJobStatus", "arguments": {"status": "Done"}}],
        }
    )
    return job_id, L.create_request(world.ctx, ALICE, spec)


def test_run_once_executes_due_requests_of_its_replica(world: World) -> None:
    jobs = [_request(world) for _ in range(2)]
    agent = RequestExecutorAgent(world.ctx)
    # Replica 1 of 2 takes only the odd request IDs.
    odd = [job for job, rid in jobs if rid % 2 == 1]
    assert agent.run_once(AgentContext("request_executor", replica=1, replicas=2)) == len(odd)
    assert sorted(j for j, _ in jobs if world.status(j) == "Done") == sorted(odd)
    assert agent.run_once(AgentContext("request_executor")) == 2 - len(odd)
    assert all(world.status(j) == "Done" for j, _ in jobs)
    assert agent.run_once(AgentContext("request_executor")) == 0


def test_run_agents_runs_the_executor(services: Any) -> None:
    world = World(services, fake_clock=False)
    job_id, rid = _request(world)
    run_agents(services.ctx.settings, ["request_executor"], once=True, services=services)
    assert world.status(job_id) == "Done"
    assert L.get_request(world.ctx, ALICE, rid).status == "Done"
