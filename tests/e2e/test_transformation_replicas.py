"""Transformations under two replicas of every agent, and under SIGKILL.

(a) Two agent processes, each running every transformation agent, on the test database
(MariaDB and PostgreSQL in CI): files arrive while they run; no task is made twice, no task is
submitted twice, no file is lost or put in two tasks.
(b) The same with the agents SIGKILLed at random moments and started again: the same result.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from ctaprod.core.catalog import FileRegistration
from ctaprod.core.identity import Identity
from ctaprod.core.metadata import FieldDeclaration
from ctaprod.core.properties import TokenKind
from ctaprod.db.tables import jobs, trans_task_files, trans_tasks
from ctaprod.logic import catalog as C
from ctaprod.logic import metadata as M
from ctaprod.logic import transformations as T
from tests.e2e.test_recovery import Processes, until

pytestmark = pytest.mark.slow
ADMIN = Identity("admin", "ctao_admin", TokenKind.USER, frozenset({"Admin"}))
AGENTS = ("transformation_trigger", "task_creation", "task_submission", "transformation_recovery")
FAST = {
    **{f"CTAPROD_AGENTS__{a.upper()}__INTERVAL": "0.2" for a in AGENTS},
    "CTAPROD_LIVENESS__AGENT_BEAT_SECONDS": "0.5",
    "CTAPROD_LIVENESS__MISSED_BEATS": "3",
}
GROUP = 3
FILES = 90


@pytest.fixture
def procs(tmp_path: Path, services: Any) -> Iterator[Processes]:
    p = Processes(tmp_path, services.ctx.settings)
    try:
        yield p
    finally:
        p.stop_all()


def agents(procs: Processes, name: str) -> Any:
    args = [a for agent in AGENTS for a in ("--name", agent)]
    return procs.start(name, "ctaprod.cli.main", "agents", *args, **FAST)


def setup(services: Any) -> int:
    ctx = services.ctx
    M.add_field(ctx, ADMIN, FieldDeclaration(name="particle", type="string"))
    register(ctx, range(15))  # before the creation: attached by its scan
    view = T.create(
        ctx,
        ADMIN,
        {
            "name": "replicas",
            "type": "Processing",
            "input_query": "particle=gamma",
            "group_size": GROUP,
            "job_template": {"Executable": "/bin/true"},
            "output_lfn_template": "/ctao/MC/rep/{{transformation_id}}/{{task_id}}.out",
        },
        start=True,
    )
    return view.trans_id


def register(ctx: Any, numbers: Any) -> None:
    regs = [
        FileRegistration(
            lfn=f"/ctao/MC/in/f{i:04d}", size=1, checksum="1", metadata={"particle": "gamma"}
        )
        for i in numbers
    ]
    C.register_files(ctx, ADMIN, regs, verify=False)


def settled(ctx: Any, tid: int) -> bool:
    view = T.get(ctx, tid)
    return view.files == {"Assigned": FILES} and set(view.tasks) == {"Waiting"}


def check(ctx: Any, tid: int) -> None:
    view = T.get(ctx, tid)
    assert view.files == {"Assigned": FILES}
    assert view.tasks == {"Waiting": FILES // GROUP}
    with ctx.db.read() as conn:
        twice = conn.execute(
            select(trans_task_files.c.file_id)
            .group_by(trans_task_files.c.file_id)
            .having(func.count() > 1)
        ).all()
        assert twice == []  # no file in two tasks
        per_task = conn.execute(
            select(trans_tasks.c.task_id, trans_tasks.c.job_id).where(trans_tasks.c.trans_id == tid)
        ).all()
        job_ids = [r.job_id for r in per_task]
        assert None not in job_ids
        assert len(set(job_ids)) == len(job_ids) == FILES // GROUP  # one job per task
        group_jobs = conn.execute(
            select(func.count()).select_from(jobs).where(jobs.c.job_group == f"{tid:08d}")
        ).scalar_one()
        assert group_jobs == FILES // GROUP  # no job submitted twice
        sizes = conn.execute(
            select(func.count()).select_from(trans_task_files).group_by(trans_task_files.c.task_id)
        ).all()
        assert {r[0] for r in sizes} == {GROUP}


def test_two_replicas_of_every_agent(procs: Processes, services: Any, tokens: Any) -> None:
    ctx = services.ctx
    tid = setup(services)
    agents(procs, "agents-1")
    agents(procs, "agents-2")
    for start in range(15, FILES, 15):
        register(ctx, range(start, start + 15))
        time.sleep(0.3)
    until(lambda: settled(ctx, tid), f"every file in a submitted task\n{procs.log('agents-1')}")
    time.sleep(1.0)  # more cycles of both: still nothing made twice
    check(ctx, tid)


def test_agents_killed_at_random_moments(procs: Processes, services: Any, tokens: Any) -> None:
    ctx = services.ctx
    tid = setup(services)
    rng = random.Random(8)
    running = [agents(procs, "agents-1"), agents(procs, "agents-2")]
    for n, start in enumerate(range(15, FILES, 15)):
        register(ctx, range(start, start + 15))
        time.sleep(rng.uniform(0.05, 0.6))
        victim = rng.randrange(2)
        running[victim].kill()  # SIGKILL, mid-cycle or not
        running[victim].wait(30)
        running[victim] = agents(procs, f"agents-{victim + 1}-{n}")
    until(lambda: settled(ctx, tid), f"every file in a submitted task\n{procs.log('agents-1')}")
    time.sleep(1.0)
    check(ctx, tid)
