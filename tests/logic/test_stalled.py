"""Stalled-job detection (ctaprod.logic.stalled) with a controlled clock, on the real DB."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ctaprod.core.errors import Forbidden
from ctaprod.logic import liveness
from ctaprod.logic.stalled import check_stalled_jobs
from tests.agents.helpers import World


@pytest.fixture
def world(services: Any) -> World:
    return World(services)


def _minor(world: World, job_id: int) -> str:
    return str(world.row(job_id)["minor_status"])


def test_running_without_heartbeat_is_stalled_and_a_heartbeat_revives_it(world: World) -> None:
    s = world.ctx.settings.jobs
    job_id, _, ident = world.running_job()
    world.clock.advance(s.stalled_after - 5)
    assert check_stalled_jobs(world.ctx).total == 0
    world.heartbeat(ident)  # the window starts again
    world.clock.advance(s.stalled_after - 5)
    assert check_stalled_jobs(world.ctx).total == 0
    assert world.status(job_id) == "Running"

    world.clock.advance(10)
    report = check_stalled_jobs(world.ctx)
    assert (report.stalled, report.rescheduled, report.failed) == (1, 0, 0)
    assert world.status(job_id) == "Stalled"
    assert _minor(world, job_id) == f"No heartbeat for {int(s.stalled_after) + 5} s"
    last = world.history(job_id)[-1]
    assert (last["status"], last["source"]) == ("Stalled", "StalledJobAgent")

    assert world.heartbeat(ident).commands == []  # no kill: the job goes on
    assert world.status(job_id) == "Running"
    assert _minor(world, job_id) == "Heartbeat resumed"
    assert check_stalled_jobs(world.ctx).total == 0


def test_pilot_gone_reschedules_and_the_job_is_matched_again(world: World) -> None:
    job_id, pilot, ident = world.running_job()
    world.end_pilot(pilot)  # Failed, without a word about its job
    world.clock.advance(world.ctx.settings.jobs.stalled_after + 1)

    report = check_stalled_jobs(world.ctx)  # Stalled, then settled in the same pass
    assert (report.stalled, report.rescheduled, report.failed) == (1, 1, 0)
    row = world.row(job_id)
    assert (row["status"], row["reschedule_count"], row["pilot_id"]) == ("Waiting", 1, None)
    assert row["heartbeat_time"] is None
    assert row["start_time"] is None
    assert world.in_task_queue(job_id)
    statuses = [(h["status"], h["minor_status"]) for h in world.history(job_id)][-3:]
    assert statuses[0][0] == "Stalled"
    assert statuses[1] == ("Rescheduled", "Stalled: pilot gone")
    assert statuses[2][0] == "Waiting"

    # The old wrapper's token is for attempt 0: refused. A new pilot gets attempt 1.
    assert isinstance(world.heartbeat(ident, ok=False).error, Forbidden)
    again = world.match(world.pilot())
    assert again is not None
    assert (again.job_id, again.attempt) == (job_id, 1)


def test_reschedule_limit_fails_the_job(world: World) -> None:
    world.ctx.settings.jobs.max_reschedules = 1
    job_id, pilot, _ = world.running_job()
    for expected in ("Waiting", "Failed"):
        world.end_pilot(pilot)
        world.clock.advance(world.ctx.settings.jobs.stalled_after + 1)
        check_stalled_jobs(world.ctx)
        assert world.status(job_id) == expected
        if expected == "Waiting":
            pilot = world.pilot()
            m = world.match(pilot)
            assert m is not None
            assert m.job_id == job_id
            world.report(world.job_ident(m, pilot), "Running")
    row = world.row(job_id)
    assert row["minor_status"].startswith("Maximum of 1 reschedulings reached")
    assert row["end_time"] is not None
    assert not world.in_task_queue(job_id)


def test_fail_policy(world: World) -> None:
    world.ctx.settings.jobs.stalled_policy = "fail"
    job_id, pilot, _ = world.running_job()
    world.end_pilot(pilot)
    world.clock.advance(world.ctx.settings.jobs.stalled_after + 1)
    report = check_stalled_jobs(world.ctx)
    assert (report.stalled, report.rescheduled, report.failed) == (1, 0, 1)
    row = world.row(job_id)
    assert (row["status"], row["minor_status"], row["reschedule_count"]) == (
        "Failed",
        "Stalled: pilot gone",
        0,
    )


def test_live_pilot_but_silent_past_failed_after(world: World) -> None:
    s = world.ctx.settings.jobs
    job_id, pilot, _ = world.running_job()
    world.clock.advance(s.stalled_after + 1)
    assert check_stalled_jobs(world.ctx).stalled == 1
    world.clock.advance(s.failed_after - s.stalled_after - 10)  # pilot alive, window open
    assert check_stalled_jobs(world.ctx).total == 0
    assert world.status(job_id) == "Stalled"
    world.clock.advance(20)
    assert check_stalled_jobs(world.ctx).rescheduled == 1
    assert world.status(job_id) == "Waiting"
    assert world.pilot_status(pilot.pilot_id or 0) == "Running"


def test_matched_but_never_started(world: World) -> None:
    s = world.ctx.settings.jobs
    [job_id] = world.submit()
    assert world.match(world.pilot()) is not None
    world.clock.advance(s.matched_timeout - 1)
    assert check_stalled_jobs(world.ctx).total == 0
    world.clock.advance(2)
    report = check_stalled_jobs(world.ctx)
    assert (report.matched_rescheduled, report.stalled) == (1, 0)
    row = world.row(job_id)
    assert (row["status"], row["reschedule_count"]) == ("Waiting", 1)
    assert world.in_task_queue(job_id)
    assert [h["minor_status"] for h in world.history(job_id)][-2] == (
        f"Matched but not started within {s.matched_timeout:g} s"
    )


def test_matched_with_heartbeats_stalls_instead(world: World) -> None:
    s = world.ctx.settings.jobs
    [job_id] = world.submit()
    pilot = world.pilot()
    m = world.match(pilot)
    assert m is not None
    world.clock.advance(5)
    world.heartbeat(world.job_ident(m, pilot))  # started (e.g. downloading its sandbox)
    world.clock.advance(s.matched_timeout + 1)
    assert check_stalled_jobs(world.ctx).total == 0
    world.clock.advance(s.stalled_after)
    assert check_stalled_jobs(world.ctx).stalled == 1
    assert world.status(job_id) == "Stalled"


def test_stuck_in_completing_fails(world: World) -> None:
    s = world.ctx.settings.jobs
    job_id, _, ident = world.running_job()
    world.report(ident, "Completing", "Uploading outputs")
    world.clock.advance(s.failed_after - 1)
    world.heartbeat(ident)  # still uploading: not stuck
    world.clock.advance(s.failed_after - 1)
    assert check_stalled_jobs(world.ctx).completing_failed == 0
    world.clock.advance(2)
    report = check_stalled_jobs(world.ctx)
    assert report.completing_failed == 1
    row = world.row(job_id)
    assert row["status"] == "Failed"
    assert row["minor_status"].startswith("Stuck in Completing")


def test_replicas_split_the_jobs_and_limit_bounds_a_pass(world: World) -> None:
    ids = [world.running_job()[0] for _ in range(6)]
    world.clock.advance(world.ctx.settings.jobs.stalled_after + 1)
    report = check_stalled_jobs(world.ctx, replica=1, replicas=2, limit=100)
    odd = {j for j in ids if j % 2 == 1}
    assert report.stalled == len(odd)
    assert {j for j in ids if world.status(j) == "Stalled"} == odd
    first = check_stalled_jobs(world.ctx, replica=0, replicas=2, limit=2)
    assert first.stalled == 2
    rest = check_stalled_jobs(world.ctx, replica=0, replicas=2, limit=100)
    assert rest.stalled == len(ids) - len(odd) - 2
    assert all(world.status(j) == "Stalled" for j in ids)


def test_concurrent_passes_settle_each_job_once(world: World) -> None:
    """Several agents at once (SKIP LOCKED on MariaDB/PostgreSQL, one writer on SQLite)."""
    import threading

    ids = []
    for _ in range(24):
        job_id, pilot, _ = world.running_job()
        world.end_pilot(pilot)
        ids.append(job_id)
    world.clock.advance(world.ctx.settings.jobs.stalled_after + 1)
    errors: list[BaseException] = []

    def agent() -> None:
        try:
            while check_stalled_jobs(world.ctx, limit=4).total:
                pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=agent) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    for job_id in ids:
        row = world.row(job_id)
        assert (row["status"], row["reschedule_count"]) == ("Waiting", 1)
        statuses = [h["status"] for h in world.history(job_id)]
        assert statuses.count("Stalled") == 1
        assert statuses.count("Rescheduled") == 1
        assert world.in_task_queue(job_id)


def test_silence_is_not_counted_across_a_server_outage(world: World) -> None:
    """A server down longer than the failed window, restarted: its Running jobs get a full
    stalled window from the restart to report (before, they were all rescheduled at once)."""
    s = world.ctx.settings.jobs
    job_id, _, ident = world.running_job()
    up = liveness.server_started(world.ctx, "api-1")
    world.clock.advance(5)
    liveness.server_beat(world.ctx, "api-1", up)
    world.clock.advance(s.failed_after + s.stalled_after + 60)  # the server is down
    assert check_stalled_jobs(world.ctx).total == 0  # nobody can report: nothing is counted
    liveness.server_started(world.ctx, "api-2")  # restarted
    assert liveness.server_up_since(world.ctx) == world.clock()
    assert check_stalled_jobs(world.ctx).total == 0
    world.clock.advance(s.stalled_after - 5)
    assert check_stalled_jobs(world.ctx).total == 0
    world.heartbeat(ident)  # the pilot got through
    world.report(ident, "Done")
    assert world.status(job_id) == "Done"


def test_a_job_silent_since_the_restart_stalls_one_window_later(world: World) -> None:
    s = world.ctx.settings.jobs
    job_id, _, _ = world.running_job()
    world.clock.advance(s.failed_after + 1)
    up = liveness.server_started(world.ctx, "api-1")
    world.clock.advance(s.stalled_after - 1)
    liveness.server_beat(world.ctx, "api-1", up)
    assert check_stalled_jobs(world.ctx).total == 0
    world.clock.advance(2)
    liveness.server_beat(world.ctx, "api-1", up)
    report = check_stalled_jobs(world.ctx)
    assert (report.stalled, report.rescheduled) == (1, 0)  # stalled, not yet failed
    assert world.status(job_id) == "Stalled"


def test_an_agent_counts_silence_from_its_own_start_at_most(world: World) -> None:
    s = world.ctx.settings.jobs
    job_id, _, _ = world.running_job()
    world.clock.advance(s.failed_after + 1)
    started = world.clock()
    assert check_stalled_jobs(world.ctx, agent_start=started).total == 0
    world.clock.advance(s.stalled_after + 1)
    assert check_stalled_jobs(world.ctx, agent_start=started).stalled == 1
    assert world.status(job_id) == "Stalled"


def test_overlapping_server_processes_make_one_up_period(world: World) -> None:
    t0 = world.clock()
    liveness.server_started(world.ctx, "a")
    world.clock.advance(20)
    liveness.server_started(world.ctx, "b")  # a rolling restart: b up before a stops
    liveness.server_beat(world.ctx, "a", t0)
    world.clock.advance(600)
    liveness.server_beat(world.ctx, "b", t0 + timedelta(seconds=20))
    assert liveness.server_up_since(world.ctx) == t0
