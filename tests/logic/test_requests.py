"""Requests and their executor (ctaprod.logic.requests) on the real test database.

The machinery is driven with ``SetJobStatus`` (and ``RemoveFile`` of files that are not in
the catalog, which counts as done): jobs are real, driven to Completed through the wrapper's
status reports; the clock is the test's.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from ctaprod.core.errors import Forbidden, InvalidInput, InvalidTransition, NotFound
from ctaprod.core.identity import Identity
from ctaprod.core.properties import TokenKind
from ctaprod.core.requests import RequestSpec, RequestStatus
from ctaprod.core.settings import Settings
from ctaprod.db.tables import request_files, request_operations, requests
from ctaprod.logic import request_executor
from ctaprod.logic import requests as L
from ctaprod.logic.request_claims import claim_due, renew_leases
from ctaprod.logic.requests import ExecutionStats
from tests.agents.helpers import ALICE, World

BOB = Identity("bob", "ctao_user", TokenKind.USER, frozenset({"NormalUser"}))
OPERATOR = Identity("op", "ctao_admin", TokenKind.USER, frozenset({"Operator"}))


@pytest.fixture
def world(services: Any) -> World:
    return World(services)


def set_done(**args: Any) -> dict[str, Any]:
    return {"type": "SetJobStatus", "arguments": {"status": "Done", **args}}


def remove(*lfns: str) -> dict[str, Any]:
    return {"type": "RemoveFile", "files": [{"lfn": lfn} for lfn in lfns]}


def spec(*ops: dict[str, Any], job_id: int | None = None, name: str = "r") -> RequestSpec:
    return RequestSpec.model_validate({"name": name, "job_id": job_id, "operations": list(ops)})


def completed_job(world: World) -> tuple[int, Identity]:
    """A job whose payload finished (Completed); (job_id, its job identity)."""
    job_id, _, ident = world.running_job()
    world.report(ident, "Completed", "Pending requests")
    return job_id, ident


def run(world: World, **kw: Any) -> ExecutionStats:
    return L.execute_due(world.ctx, **kw)


def test_created_request_shows_its_ordered_operations(world: World) -> None:
    job_id, _ = completed_job(world)
    rid = L.create_request(
        world.ctx, ALICE, spec(remove("/vo/a", "/vo/b"), set_done(), job_id=job_id)
    )
    info = L.get_request(world.ctx, ALICE, rid)
    assert (info.status, info.owner, info.job_id, info.name) == ("Waiting", "alice", job_id, "r")
    assert [(o.position, o.type, o.status) for o in info.operations] == [
        (0, "RemoveFile", "Waiting"),
        (1, "SetJobStatus", "Queued"),
    ]
    assert [(f.lfn, f.status, f.attempts) for f in info.operations[0].files] == [
        ("/vo/a", "Waiting", 0),
        ("/vo/b", "Waiting", 0),
    ]


def test_a_job_request_sent_twice_is_created_once(world: World) -> None:
    """The wrapper retries when a reply is lost: the same named job request is not doubled."""
    job_id, job_ident = completed_job(world)
    first = L.create_request(world.ctx, job_ident, spec(set_done(), job_id=job_id, name="out"))
    again = L.create_request(world.ctx, job_ident, spec(set_done(), job_id=job_id, name="out"))
    other = L.create_request(world.ctx, job_ident, spec(set_done(), job_id=job_id, name="x"))
    assert again == first != other
    with world.ctx.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(requests)).scalar() == 2


def test_set_job_status_moves_a_completed_job_to_done(world: World) -> None:
    job_id, _ = completed_job(world)
    rid = L.create_request(
        world.ctx,
        ALICE,
        spec(remove("/vo/gone"), set_done(minor_status="Outputs moved"), job_id=job_id),
    )
    stats = run(world)
    assert (stats.claimed, stats.done, stats.operations_done) == (1, 1, 2)
    info = L.get_request(world.ctx, ALICE, rid)
    assert info.status == "Done"
    assert [o.status for o in info.operations] == ["Done", "Done"]
    assert info.operations[0].files[0].status == "Done"
    row = world.row(job_id)
    assert (row["status"], row["minor_status"]) == ("Done", "Outputs moved")
    assert world.history(job_id)[-1]["source"] == "RequestExecutor"
    assert run(world).claimed == 0  # nothing left to do


def test_operations_wait_for_the_previous_one_with_backoff(world: World) -> None:
    data = world.ctx.settings.data
    job_id, _, ident = world.running_job()
    rid = L.create_request(world.ctx, ALICE, spec(set_done(), remove("/vo/x"), job_id=job_id))
    start = world.clock()
    assert run(world).retrying == 1  # the job is still Running
    info = L.get_request(world.ctx, ALICE, rid)
    assert info.status == "Waiting"
    assert info.not_before == start + _s(data.request_backoff_seconds)
    assert "not yet Completed" in info.error
    first, second = info.operations
    assert (first.status, first.attempts, second.status) == ("Waiting", 1, "Queued")
    assert second.files[0].attempts == 0  # never tried: still Queued

    world.clock.advance(data.request_backoff_seconds - 1)
    assert run(world).claimed == 0  # not yet due
    world.report(ident, "Completed")
    world.clock.advance(1)
    stats = run(world)
    assert (stats.done, stats.operations_done) == (1, 2)
    assert world.status(job_id) == "Done"


def test_exhausted_attempts_fail_the_request_and_its_job(world: World) -> None:
    data = world.ctx.settings.data
    data.request_max_attempts = 3
    job_id, _, _ = world.running_job()
    rid = L.create_request(world.ctx, ALICE, spec(set_done(), job_id=job_id))
    delays = []
    for _ in range(2):
        before = world.clock()
        assert run(world).retrying == 1
        nb = L.get_request(world.ctx, ALICE, rid).not_before
        delays.append((nb - before).total_seconds())
        world.clock.now = nb
    assert delays == [data.request_backoff_seconds, 2 * data.request_backoff_seconds]
    assert run(world).failed == 1
    info = L.get_request(world.ctx, ALICE, rid)
    reason = f"SetJobStatus: job {job_id} is Running, not yet Completed"
    assert (info.status, info.error) == ("Failed", reason)
    assert (info.operations[0].status, info.operations[0].attempts) == ("Failed", 3)
    row = world.row(job_id)
    assert row["status"] == "Failed"
    assert row["minor_status"] == f"Failover request failed: {reason}"
    assert run(world).claimed == 0


def test_a_permanent_failure_is_not_retried_then_retry_and_cancel(world: World) -> None:
    [job_id] = world.submit()
    from ctaprod.logic.jobs import kill_jobs

    kill_jobs(world.ctx, ALICE, [job_id])
    rid = L.create_request(world.ctx, ALICE, spec(remove("/vo/y"), set_done(), job_id=job_id))
    assert run(world).failed == 1  # a Killed job will never be Done
    info = L.get_request(world.ctx, ALICE, rid)
    assert (info.status, info.error) == ("Failed", f"SetJobStatus: job {job_id} is Killed")
    assert world.status(job_id) == "Killed"  # a final job is left alone

    with pytest.raises(NotFound):
        L.retry_request(world.ctx, BOB, rid)
    info = L.retry_request(world.ctx, ALICE, rid)
    assert (info.status, info.error) == ("Waiting", "")
    assert [(o.status, o.attempts) for o in info.operations] == [("Done", 0), ("Waiting", 0)]
    # Retrying a Waiting request again only makes it due now (it is already).
    assert L.retry_request(world.ctx, ALICE, rid).status == "Waiting"

    info = L.cancel_request(world.ctx, ALICE, rid)
    assert info.status == "Canceled"
    assert [o.status for o in info.operations] == ["Done", "Canceled"]
    assert run(world).claimed == 0
    with pytest.raises(InvalidTransition, match="is Canceled: cannot go to Canceled"):
        L.cancel_request(world.ctx, OPERATOR, rid)


def test_failed_files_are_reset_by_a_retry(world: World) -> None:
    world.ctx.settings.data.request_max_attempts = 1
    # RegisterReplica of a file that is not in the catalog fails (NotFound) for each file.
    op = {"type": "RegisterReplica", "arguments": {"se": "DISK-A"}, "files": [{"lfn": "/vo/n"}]}
    rid = L.create_request(world.ctx, ALICE, spec(op))
    assert run(world).failed == 1
    [f] = L.get_request(world.ctx, ALICE, rid).operations[0].files
    assert (f.status, f.attempts) == ("Failed", 1)
    assert f.error
    [f] = L.retry_request(world.ctx, ALICE, rid).operations[0].files
    assert (f.status, f.attempts, f.error) == ("Waiting", 0, "")


def test_a_request_canceled_while_executed_is_left_alone(world: World) -> None:
    job_id, _ = completed_job(world)
    rid = L.create_request(world.ctx, ALICE, spec(set_done(), job_id=job_id))
    with world.ctx.db.write() as conn:
        assert claim_due(world.ctx, conn, world.clock(), 10, "x#1", lease_until=LEASE(world)) == [
            rid
        ]
    assert run(world).claimed == 0  # Assigned: not claimed twice
    assert L.cancel_request(world.ctx, ALICE, rid).status == "Canceled"
    stats = ExecutionStats()
    # the executor that held it finishes its step
    request_executor._execute(world.ctx, rid, "x#1", stats)
    assert stats.lost == 1
    assert L.get_request(world.ctx, ALICE, rid).status == "Canceled"


def LEASE(world: World) -> datetime:
    return world.clock() + timedelta(seconds=world.ctx.settings.data.request_lease_seconds)


def claim_as(world: World, claim: str) -> list[int]:
    """Claim the due requests as executor ``claim`` (which then holds them and does nothing)."""
    with world.ctx.db.write() as conn:
        return claim_due(world.ctx, conn, world.clock(), 10, claim, lease_until=LEASE(world))


def test_the_default_lease_releases_a_dead_executors_requests_within_a_minute() -> None:
    # Released at the first executor cycle after the lease passed.
    settings = Settings()
    lease = settings.data.request_lease_seconds
    assert lease + settings.agent("request_executor").interval <= 60


def test_requests_of_a_dead_executor_are_released_once_its_lease_passed(world: World) -> None:
    job_id, _ = completed_job(world)
    rid = L.create_request(world.ctx, ALICE, spec(set_done(), job_id=job_id))
    assert claim_as(world, "dead#1") == [rid]
    lease = world.ctx.settings.data.request_lease_seconds
    world.clock.advance(lease - 1)
    assert run(world).total == 0  # its lease runs: not taken over
    world.clock.advance(2)
    stats = run(world)
    assert (stats.released, stats.done) == (1, 1)
    assert world.status(job_id) == "Done"
    assert L.get_request(world.ctx, ALICE, rid).status == "Done"


def test_a_live_executor_keeps_its_requests_by_renewing_the_lease(world: World) -> None:
    job_id, _ = completed_job(world)
    rid = L.create_request(world.ctx, ALICE, spec(set_done(), job_id=job_id))
    assert claim_as(world, "slow#1") == [rid]
    lease = world.ctx.settings.data.request_lease_seconds
    for _ in range(5):  # five leases long, renewed every half lease
        world.clock.advance(lease / 2)
        assert renew_leases(world.ctx, "slow#1") == 1
        assert run(world).total == 0
    info = L.get_request(world.ctx, ALICE, rid)
    assert (info.status, info.assigned_by) == ("Assigned", "slow#1")
    assert info.lease_until is not None
    assert info.lease_until > world.clock()


def test_retry_releases_a_request_whose_executor_died(world: World) -> None:
    job_id, _ = completed_job(world)
    rid = L.create_request(world.ctx, ALICE, spec(set_done(), job_id=job_id))
    claim_as(world, "dead#1")
    with pytest.raises(InvalidTransition, match="holds it, its lease runs until"):
        L.retry_request(world.ctx, ALICE, rid)
    assert L.get_request(world.ctx, ALICE, rid).assigned_by == "dead#1"
    world.clock.advance(world.ctx.settings.data.request_lease_seconds + 1)
    info = L.retry_request(world.ctx, ALICE, rid)
    assert (info.status, info.assigned_by, info.lease_until) == ("Waiting", "", None)
    assert info.not_before == world.clock()
    assert run(world).done == 1
    assert world.status(job_id) == "Done"


def test_retry_cuts_a_backoff_short(world: World) -> None:
    world.ctx.settings.data.request_max_attempts = 5
    op = {"type": "RegisterReplica", "arguments": {"se": "DISK-A"}, "files": [{"lfn": "/vo/n"}]}
    rid = L.create_request(world.ctx, ALICE, spec(op))
    assert run(world).retrying == 1
    waiting = L.get_request(world.ctx, ALICE, rid)
    assert waiting.status == "Waiting"
    assert waiting.not_before > world.clock()
    assert run(world).total == 0  # backing off
    info = L.retry_request(world.ctx, ALICE, rid)
    assert (info.status, info.not_before) == ("Waiting", world.clock())
    assert run(world).claimed == 1


def test_retry_refuses_done_and_canceled_requests(world: World) -> None:
    job_id, _ = completed_job(world)
    done = L.create_request(world.ctx, ALICE, spec(set_done(), job_id=job_id))
    assert run(world).done == 1
    with pytest.raises(InvalidTransition, match=f"request {done} is Done.*nothing to retry"):
        L.retry_request(world.ctx, ALICE, done)
    canceled = L.create_request(world.ctx, ALICE, spec(remove("/vo/x")))
    L.cancel_request(world.ctx, ALICE, canceled)
    with pytest.raises(InvalidTransition, match=f"request {canceled} is Canceled"):
        L.retry_request(world.ctx, ALICE, canceled)


def test_concurrent_executors_never_run_a_request_twice(world: World) -> None:
    ids = [L.create_request(world.ctx, ALICE, spec(remove(f"/vo/c{i}"))) for i in range(24)]
    totals: list[ExecutionStats] = []
    errors: list[BaseException] = []

    def executor(n: int) -> None:
        try:
            while (s := L.execute_due(world.ctx, limit=3, worker=f"w{n}")).claimed:
                totals.append(s)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=executor, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(s.claimed for s in totals) == len(ids)
    assert sum(s.done for s in totals) == len(ids)
    page = L.list_requests(world.ctx, ALICE, statuses=[RequestStatus.DONE], limit=100)
    assert sorted(r.request_id for r in page.requests) == ids
    with world.ctx.db.read() as conn:
        attempts = conn.execute(select(func.max(request_files.c.attempts))).scalar()
    assert attempts == 1


def test_who_may_create_and_see_requests(world: World) -> None:
    job_id, job_ident = completed_job(world)
    mine = L.create_request(world.ctx, ALICE, spec(remove("/vo/a")))
    # A job token creates for its own job, whatever it says.
    by_job = L.create_request(world.ctx, job_ident, spec(set_done(), job_id=999_999))
    assert L.get_request(world.ctx, job_ident, by_job).job_id == job_id
    with pytest.raises(NotFound):
        L.get_request(world.ctx, job_ident, mine)  # not its job's
    theirs = L.create_request(world.ctx, BOB, spec(remove("/vo/b")))
    with pytest.raises(NotFound, match=f"no request {theirs}"):
        L.get_request(world.ctx, ALICE, theirs)
    with pytest.raises(NotFound):
        L.cancel_request(world.ctx, ALICE, theirs)
    with pytest.raises(NotFound, match=f"no job {job_id}"):  # alice's job, hidden from bob
        L.create_request(world.ctx, BOB, spec(set_done(), job_id=job_id))
    with pytest.raises(NotFound, match="no job 424242"):
        L.create_request(world.ctx, ALICE, spec(set_done(), job_id=424242))
    pilot = Identity("pilot", "ctao_pilot", TokenKind.PILOT, frozenset({"GenericPilot"}))
    with pytest.raises(Forbidden):
        L.create_request(world.ctx, pilot, spec(remove("/vo/c")))

    assert [r.request_id for r in L.list_requests(world.ctx, ALICE).requests] == [by_job, mine]
    assert [r.request_id for r in L.list_requests(world.ctx, BOB).requests] == [theirs]
    with pytest.raises(Forbidden, match="only list your own"):
        L.list_requests(world.ctx, BOB, owner="alice")
    assert [r.request_id for r in L.list_requests(world.ctx, job_ident).requests] == [by_job]
    every = L.list_requests(world.ctx, OPERATOR)
    assert [r.request_id for r in every.requests] == [theirs, by_job, mine]
    assert L.get_request(world.ctx, OPERATOR, theirs).owner == "bob"
    assert [r.request_id for r in L.list_requests(world.ctx, OPERATOR, job_id=job_id).requests] == [
        by_job
    ]
    first = L.list_requests(world.ctx, OPERATOR, limit=2)
    assert first.next_cursor == by_job
    rest = L.list_requests(world.ctx, OPERATOR, limit=2, cursor=first.next_cursor)
    assert ([r.request_id for r in rest.requests], rest.next_cursor) == ([mine], None)


def test_bad_input_writes_nothing(world: World) -> None:
    bad = [
        spec(),
        spec({"type": "Nope", "files": [{"lfn": "/vo/a"}]}),
        spec({"type": "RemoveReplica", "files": [{"lfn": "/vo/a"}]}),
        spec(remove("/vo/a"), remove("relative/path")),
    ]
    for s in bad:
        with pytest.raises(InvalidInput):
            L.create_request(world.ctx, ALICE, s)
    with world.ctx.db.read() as conn:
        for table in (requests, request_operations, request_files):
            assert conn.execute(select(func.count()).select_from(table)).scalar() == 0
    with pytest.raises(NotFound, match="no request 5"):
        L.get_request(world.ctx, ALICE, 5)


def _s(seconds: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=seconds)
