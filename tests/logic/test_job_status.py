"""The job door (ctaprod.logic.job_status): hooks declared with JOB_MACHINE run for every
caller, a write that matched nothing is reported, submission and bulk changes go through it
with a fixed number of statements."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, func, select

from ctaprod.core.identity import Identity
from ctaprod.core.job_states import JobStatus
from ctaprod.db.tables import job_history, tq_jobs
from ctaprod.logic import jobs as L
from ctaprod.logic.job_status import Step, transition_jobs
from tests.logic.conftest import Kit

J = JobStatus


def queued(kit: Kit, job_ids: Sequence[int]) -> set[int]:
    with kit.ctx.db.read() as conn:
        rows = conn.execute(select(tq_jobs.c.job_id).where(tq_jobs.c.job_id.in_(list(job_ids))))
        return {int(r[0]) for r in rows}


def history(kit: Kit, job_id: int) -> list[tuple[str, str, str]]:
    with kit.ctx.db.read() as conn:
        return [
            (h["status"], h["minor_status"], h["source"])
            for h in kit.ctx.jobs.history(conn, job_id)
        ]


def history_rows(kit: Kit) -> int:
    with kit.ctx.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(job_history)).scalar_one())


def to_running(kit: Kit, job_ids: Sequence[int]) -> None:
    """Jobs Waiting -> Matched -> Running through the door (no pilot involved)."""
    with kit.ctx.db.write() as conn:
        transition_jobs(
            kit.ctx,
            conn,
            job_ids,
            lambda s: [Step(J.MATCHED, "test"), Step(J.RUNNING, "test")],
            "test",
        )


@contextmanager
def statements(kit: Kit) -> Iterator[list[str]]:
    """The SQL statements sent to the database inside the block."""
    sent: list[str] = []

    def record(_c: Any, _cur: Any, sql: str, *_: Any) -> None:
        sent.append(sql)

    engine = kit.ctx.db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_submission_goes_through_the_door(kit: Kit, alice: Identity) -> None:
    [job_id] = kit.submit(alice)
    assert history(kit, job_id) == [
        ("Received", "Job accepted", "JobManager"),
        ("Checking", "JobSanity", "JobManager"),
        ("Waiting", "Pilot Agent Submission", "JobManager"),
    ]
    row = kit.row(job_id)
    assert (row["status"], row["minor_status"], row["application_status"]) == (
        "Waiting",
        "Pilot Agent Submission",
        "Unknown",
    )
    assert queued(kit, [job_id]) == {job_id}  # the enqueue hook, on entering Waiting


def test_submission_statements_do_not_grow_with_the_jobs(kit: Kit, alice: Identity) -> None:
    kit.submit(alice)  # the task queue exists from now on
    counts = []
    for n in (10, 1000):
        with statements(kit) as sent:
            ids = kit.submit(alice, count=n)
        assert len(ids) == n
        # The job rows' INSERT ... RETURNING may go row by row (SQLAlchemy does so on SQLite
        # to return the IDs in order): that is the insert, not the door; everything else is
        # constant.
        counts.append(len([s for s in sent if not s.startswith("INSERT INTO jobs ")]))
    assert counts[0] == counts[1], counts


def test_hooks_run_for_every_caller(kit: Kit, alice: Identity) -> None:
    waiting, running, completed = kit.submit(alice, count=3)
    to_running(kit, [running, completed])
    assert queued(kit, [waiting, running, completed]) == {waiting}  # dequeue on leaving Waiting
    assert kit.row(running)["end_time"] is None
    L.kill_jobs(kit.ctx, alice, [waiting])
    assert queued(kit, [waiting]) == set()
    assert kit.row(waiting)["end_time"] is not None  # end_time on entering an ended state
    with kit.ctx.db.write() as conn:
        transition_jobs(
            kit.ctx, conn, [running], lambda s: [Step(J.FAILED, "payload failed")], "wrapper"
        )
        transition_jobs(kit.ctx, conn, [completed], lambda s: [Step(J.COMPLETED)], "wrapper")
    assert kit.row(running)["end_time"] is not None
    ended = kit.row(completed)["end_time"]
    assert ended is not None
    kit.ctx.clock = lambda: ended.replace(year=ended.year + 1)
    with kit.ctx.db.write() as conn:
        transition_jobs(kit.ctx, conn, [completed], lambda s: [Step(J.DONE, "requests")], "ops")
    assert kit.row(completed)["end_time"] == ended  # a job that ended keeps its end time
    assert history(kit, running)[-1] == ("Failed", "payload failed", "wrapper")
    assert history(kit, completed)[-2:] == [
        ("Completed", "", "wrapper"),
        ("Done", "requests", "ops"),
    ]


def test_reschedule_goes_back_to_the_queue(kit: Kit, alice: Identity) -> None:
    ids = kit.submit(alice, count=3, Site="LCG.One.org")
    to_running(kit, ids)
    with kit.ctx.db.write() as conn:  # the match wrote the pilot's site over the job's one
        transition_jobs(
            kit.ctx,
            conn,
            ids,
            lambda s: [Step(J.STALLED, "quiet", values={"site": "LCG.Other.org"})],
            "test",
        )
    out = L.reschedule_jobs(kit.ctx, None, ids, "Stalled", strict=False)
    assert out == dict.fromkeys(ids, J.WAITING)
    assert queued(kit, ids) == set(ids)
    row = kit.row(ids[0])
    assert (row["status"], row["reschedule_count"], row["site"], row["end_time"]) == (
        "Waiting",
        1,
        "LCG.One.org",
        None,
    )
    assert [h[0] for h in history(kit, ids[0])[-2:]] == ["Rescheduled", "Waiting"]


def test_a_write_that_matched_nothing_is_reported(kit: Kit, alice: Identity) -> None:
    """The job changed between the read and the conditional UPDATE: the change is reported
    missed, and neither history nor queue membership is written for it."""
    a, b = kit.submit(alice, count=2)
    with kit.ctx.db.read() as conn:
        seen = kit.ctx.jobs.states(conn, [a, b])  # read, then another transaction kills b
    L.kill_jobs(kit.ctx, alice, [b])
    before = history_rows(kit)
    with kit.ctx.db.write() as conn:
        result = transition_jobs(
            kit.ctx,
            conn,
            [a, b],
            lambda s: [Step(J.MATCHED, "late claim")],
            "test",
            known=seen,
        )
    assert [(t.ident, t.old, t.new) for t in result.applied] == [(a, J.WAITING, J.MATCHED)]
    assert [(m.ident, m.old, m.new) for m in result.missed] == [(b, J.WAITING, J.MATCHED)]
    assert history_rows(kit) == before + 1
    assert history(kit, b)[-1] == ("Killed", "Killed by user", "user:alice")
    assert kit.row(b)["status"] == "Killed"


def _constant(kit: Kit, make: Callable[[int], list[int]], act: Callable[[list[int]], Any]) -> None:
    counts = []
    for n in (10, 1000):
        ids = make(n)
        with statements(kit) as sent:
            act(ids)
        counts.append(len(sent))
    assert counts[0] == counts[1], counts


def test_bulk_reschedule_has_a_fixed_number_of_statements(kit: Kit, alice: Identity) -> None:
    kit.submit(alice)

    def make(n: int) -> list[int]:
        ids = kit.submit(alice, count=n)
        to_running(kit, ids)
        return ids

    def act(ids: list[int]) -> None:
        out = L.reschedule_jobs(kit.ctx, None, ids, "bulk", strict=False)
        assert set(out.values()) == {J.WAITING}
        assert len(out) == len(ids)

    _constant(kit, make, act)


def test_bulk_kill_has_a_fixed_number_of_statements(kit: Kit, alice: Identity) -> None:
    kit.submit(alice)

    def make(n: int) -> list[int]:
        ids = kit.submit(alice, count=n)
        to_running(kit, ids[: n // 2])  # half Running (kill command), half Waiting (dequeue)
        return ids

    def act(ids: list[int]) -> None:
        result = L.kill_jobs(kit.ctx, alice, ids)
        assert len(result.applied) == len(ids)

    _constant(kit, make, act)
