"""Task queue counters (ctaprod.db.taskqueues): kept exact by enqueue, dequeue and claim,
read by the matcher's snapshot without touching the waiting jobs, checked and repaired, and
exact under concurrent claims, dequeues and enqueues (threads on the engine under test)."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select, text, update

from ctaprod.core.matching import Requirements
from ctaprod.db import migrate
from ctaprod.db.engine import Database
from ctaprod.db.tables import task_queues, tq_jobs
from ctaprod.db.taskqueues import QueueLoad
from ctaprod.logic.context import Context
from tests.db.test_migrations import empty_db  # noqa: F401  (fixture: a fresh database)


@pytest.fixture
def ctx(services: Any) -> Context:
    return services.ctx  # type: ignore[no-any-return]


def _queues(ctx: Context, *owners: str) -> list[int]:
    reqs = [
        Requirements(owner=o, owner_group="g", job_type="User", cpu_segment=360) for o in owners
    ]
    with ctx.db.write() as conn:
        ids = ctx.queues.ensure_queues(conn, reqs, datetime.now(UTC))
    return [ids[r.key()] for r in reqs]


def _enqueue(ctx: Context, entries: list[tuple[int, int, int]]) -> None:
    """(job_id, tq_id, priority) rows, in one transaction."""
    with ctx.db.write() as conn:
        ctx.queues.enqueue(conn, [{"job_id": j, "tq_id": q, "priority": p} for j, q, p in entries])


def _claim(ctx: Context, tq_id: int) -> int | None:
    with ctx.db.write() as conn:
        return ctx.queues.claim(conn, tq_id)


def _dequeue(ctx: Context, job_ids: list[int]) -> int:
    with ctx.db.write() as conn:
        return ctx.queues.dequeue(conn, job_ids)


def _loads(ctx: Context) -> dict[int, tuple[int, int]]:
    with ctx.db.read() as conn:
        return {ld.tq_id: (ld.waiting, ld.max_priority) for ld in ctx.queues.loads(conn)}


def _stored(ctx: Context, tq_id: int) -> tuple[int, int]:
    with ctx.db.read() as conn:
        row = conn.execute(
            select(task_queues.c.waiting, task_queues.c.max_priority).where(
                task_queues.c.tq_id == tq_id
            )
        ).one()
    return int(row[0]), int(row[1])


def _assert_exact(ctx: Context) -> None:
    """Every queue's counters equal what its tq_jobs rows say (and nothing needed repair)."""
    with ctx.db.read() as conn:
        assert ctx.queues.check_counters(conn, repair=False) == []
        counted = {
            r[0]: (int(r[1]), int(r[2]))
            for r in conn.execute(
                select(tq_jobs.c.tq_id, func.count(), func.max(tq_jobs.c.priority)).group_by(
                    tq_jobs.c.tq_id
                )
            )
        }
    assert _loads(ctx) == {q: c for q, c in counted.items() if c[0] > 0}


@contextmanager
def _statements(ctx: Context) -> Iterator[list[tuple[str, bool, int]]]:
    """(SQL, executemany, number of parameter sets) of every statement sent meanwhile."""
    seen: list[tuple[str, bool, int]] = []

    def record(_c: Any, _cur: Any, sql: str, params: Any, _ctx: Any, many: bool) -> None:
        seen.append((sql, many, len(params) if many else 1))

    event.listen(ctx.db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", record)


def test_counters_follow_enqueue_claim_dequeue_and_drop(ctx: Context) -> None:
    a, b = _queues(ctx, "alice", "bob")
    assert _loads(ctx) == {}
    _enqueue(ctx, [(1, a, 1), (2, a, 3), (3, a, 3), (4, a, 2), (5, b, 0)])
    assert _loads(ctx) == {a: (4, 3), b: (1, 0)}
    _assert_exact(ctx)
    assert _claim(ctx, a) == 2  # best priority, oldest first
    assert _loads(ctx)[a] == (3, 3)
    assert _claim(ctx, a) == 3  # the last job of priority 3: the maximum goes down
    assert _loads(ctx)[a] == (2, 2)
    assert _dequeue(ctx, [4, 999]) == 1  # not queued: ignored
    assert _loads(ctx)[a] == (1, 1)
    _enqueue(ctx, [(6, a, 5)])
    assert _loads(ctx)[a] == (2, 5)
    _assert_exact(ctx)
    assert _dequeue(ctx, [4, 6]) == 1
    assert _claim(ctx, a) == 1
    assert _claim(ctx, a) is None
    assert a not in _loads(ctx)
    assert _stored(ctx, a) == (0, 0)  # an empty queue counts 0 and shows priority 0
    assert _loads(ctx) == {b: (1, 0)}  # priority 0 is a priority: the queue is not empty
    _assert_exact(ctx)
    with ctx.db.write() as conn:
        assert ctx.queues.drop_empty(conn) == 1
    assert _loads(ctx) == {b: (1, 0)}
    assert _claim(ctx, b) == 5
    _assert_exact(ctx)


def test_a_batched_enqueue_updates_each_queue_once(ctx: Context) -> None:
    queues = _queues(ctx, "alice", "bob", "carol")
    entries = [(j, queues[j % 3], j % 4) for j in range(1, 10_001)]
    with _statements(ctx) as seen:
        _enqueue(ctx, entries)
    updates = [s for s in seen if s[0].lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 1  # one executemany statement...
    assert updates[0][2] == 3  # ...with one parameter set per queue
    inserts = [s for s in seen if s[0].lstrip().upper().startswith("INSERT")]
    assert len(inserts) == 1
    assert _loads(ctx) == {q: (3333 + (i == 1), 3) for i, q in enumerate(queues)}
    _assert_exact(ctx)


def test_the_snapshot_does_not_read_the_waiting_jobs(ctx: Context, services: Any) -> None:
    """Its cost must not grow with the waiting jobs: no statement of a snapshot refresh
    touches tq_jobs (the old snapshot grouped all of them)."""
    [a] = _queues(ctx, "alice")
    _enqueue(ctx, [(j, a, 1) for j in range(1, 501)])
    with _statements(ctx) as seen:
        with ctx.db.read() as conn:
            loads = ctx.queues.loads(conn)
        snap = services.matcher.snapshot()
    assert loads == [QueueLoad(a, 500, 1)]
    assert snap.loads == {a: QueueLoad(a, 500, 1)}
    assert seen
    assert [s for s, _, _ in seen if "tq_jobs" in s] == []


def test_check_counters_finds_and_repairs_drift(ctx: Context) -> None:
    a, b, c, d = _queues(ctx, "alice", "bob", "carol", "dave")
    _enqueue(ctx, [(1, a, 2), (2, a, 4), (3, b, 1), (4, c, 0)])
    with ctx.db.write() as conn:  # corrupt them behind TaskQueueDB's back
        for q, waiting, prio in ((a, 7, 9), (b, 0, 0), (c, -2, 0), (d, 3, 1)):
            conn.execute(
                update(task_queues)
                .where(task_queues.c.tq_id == q)
                .values(waiting=waiting, max_priority=prio)
            )
    with ctx.db.write() as conn:
        found = ctx.queues.check_counters(conn, repair=False)
    assert {(x.tq_id, x.stored, x.actual) for x in found} == {
        (a, (7, 9), (2, 4)),
        (b, (0, 0), (1, 1)),
        (c, (-2, 0), (1, 0)),
        (d, (3, 1), (0, 0)),
    }
    assert _stored(ctx, a) == (7, 9)  # only reported
    with ctx.db.write() as conn:
        assert len(ctx.queues.check_counters(conn, [a, b])) == 2
        assert len(ctx.queues.check_counters(conn)) == 2  # c and d
    _assert_exact(ctx)


def test_a_claim_on_an_empty_queue_clears_a_positive_counter(ctx: Context) -> None:
    """Otherwise every snapshot would offer the queue again and matchers would keep trying."""
    [a] = _queues(ctx, "alice")
    with ctx.db.write() as conn:
        conn.execute(update(task_queues).values(waiting=3, max_priority=2))
    assert _loads(ctx) == {a: (3, 2)}
    assert _claim(ctx, a) is None
    assert _stored(ctx, a) == (0, 0)
    assert _loads(ctx) == {}


def test_a_claim_corrects_a_counter_that_would_go_negative(ctx: Context) -> None:
    a, b = _queues(ctx, "alice", "bob")
    _enqueue(ctx, [(1, a, 1), (2, a, 1), (3, b, 1), (4, b, 1)])
    with ctx.db.write() as conn:
        conn.execute(update(task_queues).values(waiting=0, max_priority=0))
    assert _claim(ctx, a) == 1
    assert _stored(ctx, a) == (1, 1)
    assert _dequeue(ctx, [3]) == 1
    assert _stored(ctx, b) == (1, 1)
    _assert_exact(ctx)


def test_concurrent_claims_dequeues_and_enqueues_keep_exact_counters(ctx: Context) -> None:
    """8 claimers, 2 dequeuers and an enqueuer on 3 queues at once: every job leaves its
    queue exactly once, and the counters end exact (0 everywhere)."""
    queues = _queues(ctx, "alice", "bob", "carol")
    rng = random.Random(7)
    first = [(j, queues[j % 3], rng.randint(0, 3)) for j in range(1, 601)]
    later = [(j, queues[j % 3], rng.randint(0, 3)) for j in range(601, 901)]
    _enqueue(ctx, first)
    claimed: list[int] = []
    removed: list[int] = []  # how many each dequeue took out
    errors: list[BaseException] = []
    enqueued = threading.Event()
    barrier = threading.Barrier(11)

    def claimer(seed: int) -> None:
        r = random.Random(seed)
        try:
            barrier.wait()
            while True:
                got = [j for q in r.sample(queues, 3) if (j := _claim(ctx, q)) is not None]
                claimed.extend(got)
                if not got and enqueued.is_set() and not _loads(ctx):
                    return
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def dequeuer(seed: int) -> None:
        r = random.Random(seed)
        try:
            barrier.wait()
            for _ in range(15):
                removed.append(_dequeue(ctx, r.sample(range(1, 901), 10)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def enqueuer() -> None:
        try:
            barrier.wait()
            for k in range(0, len(later), 50):
                _enqueue(ctx, later[k : k + 50])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            enqueued.set()

    threads = [threading.Thread(target=claimer, args=(s,)) for s in range(8)]
    threads += [threading.Thread(target=dequeuer, args=(s,)) for s in (101, 102)]
    threads.append(threading.Thread(target=enqueuer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not [t for t in threads if t.is_alive()]
    assert errors == []
    assert len(claimed) == len(set(claimed))
    assert len(claimed) + sum(removed) == 900  # each job left its queue exactly once
    with ctx.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(tq_jobs)).scalar_one() == 0
    assert [_stored(ctx, q) for q in queues] == [(0, 0)] * 3
    _assert_exact(ctx)


def test_the_migration_counts_the_jobs_already_queued(empty_db: Database) -> None:  # noqa: F811
    """Revision 0005 adds the counters and initializes them from the queued jobs (it follows
    0003 since main has it; written against 0002)."""
    migrate.upgrade(empty_db, "0003")
    now = datetime.now(UTC)
    with empty_db.engine.begin() as conn:
        conn.execute(  # only the columns before revision 0005 are named
            insert(task_queues),
            [
                {
                    "tq_id": q,
                    "key": f"key{q}",
                    "owner": "alice",
                    "owner_group": "g",
                    "requirements": "{}",
                    "created": now,
                }
                for q in (1, 2, 3)
            ],
        )
        conn.execute(
            text("INSERT INTO tq_jobs (job_id, tq_id, priority) VALUES (:j, :q, :p)"),
            [{"j": 1, "q": 1, "p": 2}, {"j": 2, "q": 1, "p": 5}, {"j": 3, "q": 2, "p": 0}],
        )
    migrate.upgrade(empty_db)
    with empty_db.engine.connect() as conn:
        rows = conn.execute(
            select(task_queues.c.tq_id, task_queues.c.waiting, task_queues.c.max_priority)
        ).all()
    assert sorted(tuple(r) for r in rows) == [(1, 2, 5), (2, 1, 0), (3, 0, 0)]


def test_repair_queue_counters_chunk_by_chunk(ctx: Context) -> None:
    """The audit the cleaning agent runs: every queue recounted, drifted ones repaired."""
    from ctaprod.logic.cleaning import clean
    from ctaprod.logic.matcher import repair_queue_counters

    queues = _queues(ctx, *[f"user{i}" for i in range(7)])
    _enqueue(ctx, [(j, queues[j % 7], j % 3) for j in range(1, 71)])
    assert repair_queue_counters(ctx, chunk=3) == []
    with ctx.db.write() as conn:
        conn.execute(
            update(task_queues).where(task_queues.c.tq_id.in_(queues[1::2])).values(waiting=99)
        )
    drifts = repair_queue_counters(ctx, chunk=3)
    assert sorted(d.tq_id for d in drifts) == sorted(queues[1::2])
    _assert_exact(ctx)
    with ctx.db.write() as conn:
        conn.execute(update(task_queues).where(task_queues.c.tq_id == queues[0]).values(waiting=0))
    assert clean(ctx).queue_counters_repaired == 1
    _assert_exact(ctx)
