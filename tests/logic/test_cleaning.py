"""Job cleaning (ctaprod.logic.cleaning): retention per final status, sandboxes, task queues."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from ctaprod.core.identity import Identity
from ctaprod.core.properties import TokenKind
from ctaprod.db.tables import job_history, sandbox_refs, sandboxes, task_queues
from ctaprod.logic import jobs as job_logic
from ctaprod.logic.cleaning import clean, remove_old_jobs
from ctaprod.logic.sandboxes import storage_path
from tests.agents.helpers import ALICE, World

DAY = 86400.0
BOB = Identity("bob", "ctao_user", TokenKind.USER, frozenset({"NormalUser"}))


@pytest.fixture
def world(services: Any) -> World:
    return World(services)


def _count(world: World, table: Any, *where: Any) -> int:
    with world.ctx.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def _finish(world: World, status: str, **fields: Any) -> int:
    job_id, _, ident = world.running_job(**fields)
    world.report(ident, status)
    return job_id


def _stored(world: World, sha: str) -> bool:
    se = world.ctx.storage(world.ctx.settings.sandboxes.storage_element)
    return se.exists(storage_path(sha))


def test_retention_per_status_with_sandboxes_and_task_queues(world: World, tmp_path: Path) -> None:
    shared, _ = world.sandbox(tmp_path, "shared")
    only_old, _ = world.sandbox(tmp_path, "only-old")
    of_failed, _ = world.sandbox(tmp_path, "of-failed")
    old_done = _finish(world, "Done", InputSandbox=[f"SB:{shared}", f"SB:{only_old}"])
    old_failed = _finish(world, "Failed", InputSandbox=[f"SB:{of_failed}"])
    [old_killed, old_deleted] = world.submit(2)
    job_logic.kill_jobs(world.ctx, ALICE, [old_killed])
    job_logic.delete_jobs(world.ctx, ALICE, [old_deleted])
    running, _, _ = world.running_job()

    world.clock.advance(7.5 * DAY)
    recent_done = _finish(world, "Done", InputSandbox=[f"SB:{shared}"])
    world.sandbox(tmp_path, "only-old", ident=BOB)  # same content, another owner, recent

    world.clock.advance(0.5 * DAY)  # day 8: Done (7 d) and Deleted (0 d) are due
    report = clean(world.ctx)
    assert report.jobs == 2
    assert report.sandboxes == 1  # alice's copy of only-old; bob's copy keeps the file
    assert report.task_queues == 1
    assert world.row(old_done) is None
    assert world.row(old_deleted) is None
    assert _count(world, job_history, job_history.c.job_id == old_done) == 0
    assert _count(world, sandbox_refs, sandbox_refs.c.job_id == old_done) == 0
    for kept in (old_failed, old_killed, running, recent_done):
        assert world.row(kept) is not None
    assert _count(world, sandboxes, sandboxes.c.sha256 == shared) == 1
    assert _count(world, sandboxes, sandboxes.c.sha256 == only_old) == 1
    assert _stored(world, shared)
    assert _stored(world, only_old)
    assert _count(world, task_queues) == 0

    world.clock.advance(6.2 * DAY)  # day 14.2: Failed and Killed (14 d) are due
    report = clean(world.ctx)
    assert report.jobs == 2
    assert world.row(old_failed) is None
    assert world.row(old_killed) is None
    assert world.status(running) == "Running"
    assert world.status(recent_done) == "Done"
    # of-failed (unused now, stale) goes with its file; bob's only-old is stale too.
    assert report.sandboxes == 2
    assert not _stored(world, of_failed)
    assert not _stored(world, only_old)
    assert _stored(world, shared)


def test_limit_replicas_and_waiting_jobs_stay(world: World) -> None:
    world.ctx.settings.cleaning.done_retention_days = 1
    done = [_finish(world, "Done") for _ in range(5)]
    [waiting] = world.submit()
    world.clock.advance(2 * DAY)
    assert remove_old_jobs(world.ctx, replica=1, replicas=2) == sum(1 for j in done if j % 2)
    assert remove_old_jobs(world.ctx, limit=1) == 1
    assert remove_old_jobs(world.ctx) == sum(1 for j in done if j % 2 == 0) - 1
    assert all(world.row(j) is None for j in done)
    assert world.status(waiting) == "Waiting"
    assert world.in_task_queue(waiting)
    # Only replica 0 does the global part (sandboxes, task queues).
    assert clean(world.ctx, replica=1, replicas=2).task_queues == 0
    assert _count(world, task_queues) == 1
