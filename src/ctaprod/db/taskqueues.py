"""Task queues: waiting jobs grouped by identical requirements, and the atomic job claim.

Each queue row carries counters (``waiting``, ``max_priority``) kept in the same transaction
as its ``tq_jobs`` rows by :meth:`TaskQueueDB.enqueue`, :meth:`~TaskQueueDB.dequeue` and
:meth:`~TaskQueueDB.claim`, so the matcher's snapshot reads one row per queue, whatever the
number of waiting jobs. Every change of ``tq_jobs`` must go through these methods.

Locks (MariaDB/PostgreSQL): a claim or dequeue locks its ``tq_jobs`` rows, then the counter
rows of their queues in ``tq_id`` order; a submission locks the queue rows it fills (in
``tq_id`` order) before inserting. A queue row is thus held from its counter update to the
commit: claimers of one queue queue up there for the rest of their short transaction, while
claimers of other queues never meet.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, case, delete, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ctaprod.core.matching import Requirements
from ctaprod.db.tables import task_queues, tq_jobs

log = logging.getLogger(__name__)
TQ = task_queues.c
CHUNK = 900  # ids per IN list (SQLite's default limit is 999 bound parameters)


@dataclass(frozen=True)
class QueueLoad:
    tq_id: int
    waiting: int
    max_priority: int


@dataclass(frozen=True)
class CounterDrift:
    """A queue whose stored counters differed from its ``tq_jobs`` rows."""

    tq_id: int
    stored: tuple[int, int]  # (waiting, max_priority) as stored
    actual: tuple[int, int]  # as counted


# Counter statements, built once (executemany with one parameter set per queue).
_INCREMENT = (
    update(task_queues)
    .where(TQ.tq_id == bindparam("q"))
    .values(
        waiting=TQ.waiting + bindparam("n"),
        max_priority=case(
            (TQ.max_priority < bindparam("p"), bindparam("p")), else_=TQ.max_priority
        ),
    )
)
_DECREMENT = (
    update(task_queues)
    .where(TQ.tq_id == bindparam("q"))
    .values(waiting=TQ.waiting - bindparam("n"))
)
_SET = (
    update(task_queues)
    .where(TQ.tq_id == bindparam("q"))
    .values(waiting=bindparam("w"), max_priority=bindparam("p"))
)
# The best priority left in a queue: one step down the (tq_id, priority, job_id) index
# (ORDER BY ... LIMIT 1 rather than max(): MariaDB walks the whole queue for a correlated max).
_TOP = (
    select(tq_jobs.c.priority)
    .where(tq_jobs.c.tq_id == TQ.tq_id)
    .order_by(tq_jobs.c.priority.desc())
    .limit(1)
    .scalar_subquery()
)


# The claim's statements, with the queue (and priorities) as parameters: built once.
_BEST = select(func.max(tq_jobs.c.priority)).where(tq_jobs.c.tq_id == bindparam("q"))
_BEST_BELOW = _BEST.where(tq_jobs.c.priority < bindparam("below"))
_OLDEST = (
    select(tq_jobs.c.job_id)
    .where(tq_jobs.c.tq_id == bindparam("q"), tq_jobs.c.priority == bindparam("p"))
    .order_by(tq_jobs.c.job_id)
    .limit(1)
)
_OLDEST_SKIP_LOCKED = _OLDEST.with_for_update(skip_locked=True)
_TAKE = delete(tq_jobs).where(tq_jobs.c.job_id == bindparam("j"))
# SQLite (one writer at a time, no row locks): the whole take in one statement.
_TAKE_BEST = (
    delete(tq_jobs)
    .where(
        tq_jobs.c.job_id
        == select(tq_jobs.c.job_id)
        .where(tq_jobs.c.tq_id == bindparam("q"), tq_jobs.c.priority == _BEST.scalar_subquery())
        .order_by(tq_jobs.c.job_id)
        .limit(1)
        .scalar_subquery()
    )
    .returning(tq_jobs.c.job_id)
)
# SQLite: one writer at a time, so the decrement and the new best priority are one statement
# (-1: no job left, stored as 0 by a second statement).
_DECREMENT_AND_TOP = (
    update(task_queues)
    .where(TQ.tq_id == bindparam("q"))
    .values(waiting=TQ.waiting - bindparam("n"), max_priority=func.coalesce(_TOP, -1))
    .returning(TQ.waiting, TQ.max_priority)
)


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for i in range(0, len(ids), CHUNK):
        yield ids[i : i + CHUNK]


class TaskQueueDB:
    def __init__(self, skip_locked: bool) -> None:
        self.skip_locked = skip_locked

    def ensure_queues(
        self, conn: Connection, reqs: Sequence[Requirements], now: datetime
    ) -> dict[str, int]:
        """Return the tq_id of each requirement set, creating missing queues.

        The queue rows are locked (MariaDB/PostgreSQL, in ``tq_id`` order) until the caller
        commits: ``drop_empty`` cannot remove a queue a submission is about to fill, and the
        counter update of :meth:`enqueue` needs no lock upgrade (two submitters holding share
        locks on one queue would deadlock there). Two submitters creating the same queue at
        once both end up with the one that won.
        """
        keys = {r.key(): r for r in reqs}
        found = self._ids(conn, sorted(keys))
        for _ in range(10):
            missing = sorted(k for k in keys if k not in found)
            for k in missing:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            insert(task_queues).values(
                                key=k,
                                owner=keys[k].owner,
                                owner_group=keys[k].owner_group,
                                requirements=keys[k].model_dump_json(),
                                created=now,
                            )
                        )
                except IntegrityError:
                    pass  # created concurrently: picked up below
            if missing:
                found.update(self._ids(conn, missing))
            if not self.skip_locked:
                return found  # SQLite: this transaction holds the only write lock
            held = self._lock(conn, sorted(set(found.values())))
            gone = [k for k, q in found.items() if q not in held]
            if not gone:
                return found
            for k in gone:  # dropped as empty between our read and our lock: create it again
                del found[k]
        raise RuntimeError("task queues keep being dropped while being filled")

    def _ids(self, conn: Connection, keys: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in range(0, len(keys), CHUNK):
            stmt = select(TQ.key, TQ.tq_id).where(TQ.key.in_(keys[i : i + CHUNK]))
            out.update({r.key: r.tq_id for r in conn.execute(stmt)})
        return out

    def _lock(self, conn: Connection, tq_ids: Sequence[int]) -> set[int]:
        """Lock queue rows for their counter updates; returns those that still exist."""
        held: set[int] = set()
        for chunk in _chunks(tq_ids):
            stmt = (
                select(TQ.tq_id)
                .where(TQ.tq_id.in_(chunk))
                .order_by(TQ.tq_id)
                # PostgreSQL: FOR NO KEY UPDATE, which the foreign-key checks of the tq_jobs
                # inserts (FOR KEY SHARE) do not wait for; drop_empty's DELETE does.
                .with_for_update(key_share=True)
            )
            held.update(r[0] for r in conn.execute(stmt))
        return held

    def enqueue(self, conn: Connection, entries: Sequence[Mapping[str, int]]) -> None:
        """Put jobs (job_id, tq_id, priority) into their queues and count them: one counter
        update per queue, whatever the number of jobs."""
        if not entries:
            return
        if self.skip_locked:
            # The queue rows first, exclusively (a no-op after ensure_queues): the foreign-key
            # checks of the inserts take share locks on them, and upgrading a share lock to
            # the counter update's exclusive one deadlocks with a claimer already waiting.
            self._lock(conn, sorted({e["tq_id"] for e in entries}))
        conn.execute(insert(tq_jobs), list(entries))
        per_queue: dict[int, tuple[int, int]] = {}
        for e in entries:
            n, p = per_queue.get(e["tq_id"], (0, 0))
            per_queue[e["tq_id"]] = (n + 1, max(p, e["priority"]))
        conn.execute(
            _INCREMENT, [{"q": q, "n": n, "p": p} for q, (n, p) in sorted(per_queue.items())]
        )

    def dequeue(self, conn: Connection, job_ids: Sequence[int]) -> int:
        """Take jobs out of their queues (those not queued are ignored); returns how many
        were removed. A job claimed concurrently is counted by its claimer, not here."""
        removed: Counter[int] = Counter()
        for chunk in _chunks(job_ids):
            where = tq_jobs.c.job_id.in_(chunk)
            if conn.dialect.delete_returning:
                gone = conn.execute(delete(tq_jobs).where(where).returning(tq_jobs.c.tq_id))
                removed.update(r[0] for r in gone)
            else:  # locked first, so that the rows counted are the rows deleted
                stmt = select(tq_jobs.c.job_id, tq_jobs.c.tq_id).where(where)
                if self.skip_locked:
                    stmt = stmt.with_for_update()
                rows = conn.execute(stmt).all()
                if rows:
                    conn.execute(delete(tq_jobs).where(tq_jobs.c.job_id.in_([r[0] for r in rows])))
                removed.update(r[1] for r in rows)
        self._settle(conn, removed)
        return sum(removed.values())

    def settle(
        self, conn: Connection, claimed: Mapping[int, int], empty: Iterable[int] = ()
    ) -> None:
        """Count out ``claimed[tq_id]`` jobs taken with ``claim(..., settle=False)``, then
        make sure the counters of the queues those claims found ``empty`` say so."""
        self._settle(conn, {q: n for q, n in claimed.items() if n})
        for tq_id in sorted(set(empty) - {q for q, n in claimed.items() if n}):
            self._check_empty(conn, tq_id)

    def _settle(self, conn: Connection, removed: Mapping[int, int]) -> None:
        """Count ``removed[tq_id]`` jobs out of each queue (its ``tq_jobs`` rows are already
        deleted by this transaction) and set its highest priority from the index.

        The decrement locks the queue row first; the statement after it then sees every
        committed change of the queue, and jobs other transactions are removing but have not
        counted out yet are still visible to it. So the counter must equal the jobs it sees:
        a queue that sees none must count 0, and the priority read is the one to store (the
        last of concurrent claimers to commit sets the final value). O(log n) per queue.
        """
        if not removed:
            return
        if len(removed) == 1 and not self.skip_locked and conn.dialect.update_returning:
            [(q, n)] = removed.items()
            row = conn.execute(_DECREMENT_AND_TOP, {"q": q, "n": n}).first()
            if row is None or (row.max_priority >= 0 and row.waiting > 0):
                return
            if row.max_priority < 0 and row.waiting == 0:  # the last job left: store 0
                conn.execute(_SET, {"q": q, "w": 0, "p": 0})
                return
            removed = {q: 0}  # counter and rows disagree: the general path repairs it
        ids = sorted(removed)
        conn.execute(_DECREMENT, [{"q": q, "n": removed[q]} for q in ids])
        fixes: list[dict[str, int]] = []
        for chunk in _chunks(ids):
            stmt = select(TQ.tq_id, TQ.waiting, TQ.max_priority, _TOP.label("top")).where(
                TQ.tq_id.in_(chunk)
            )
            for r in conn.execute(stmt):
                top = 0 if r.top is None else int(r.top)
                waiting = int(r.waiting)
                if waiting < 0 or (r.top is None) != (waiting == 0):
                    actual = self._count(conn, r.tq_id)
                    log.warning(
                        "task queue %s counted %s waiting jobs, holds %s: counter repaired",
                        r.tq_id,
                        waiting,
                        actual,
                    )
                    fixes.append({"q": r.tq_id, "w": actual, "p": top})
                elif top != r.max_priority:
                    fixes.append({"q": r.tq_id, "w": waiting, "p": top})
        if fixes:
            conn.execute(_SET, fixes)

    def _count(self, conn: Connection, tq_id: int) -> int:
        stmt = select(func.count()).select_from(tq_jobs).where(tq_jobs.c.tq_id == tq_id)
        return int(conn.execute(stmt).scalar_one())

    def queues(self, conn: Connection) -> dict[int, Requirements]:
        """All task queues with their requirements."""
        rows = conn.execute(select(TQ.tq_id, TQ.requirements))
        return {r.tq_id: Requirements.model_validate_json(r.requirements) for r in rows}

    def queue_requirements(
        self, conn: Connection, tq_ids: Sequence[int]
    ) -> dict[int, Requirements]:
        """The requirements of the given queues (those that exist)."""
        out: dict[int, Requirements] = {}
        for chunk in _chunks(list(tq_ids)):
            rows = conn.execute(select(TQ.tq_id, TQ.requirements).where(TQ.tq_id.in_(chunk)))
            out.update({r.tq_id: Requirements.model_validate_json(r.requirements) for r in rows})
        return out

    def loads(self, conn: Connection) -> list[QueueLoad]:
        """Waiting jobs and highest priority per non-empty queue, from the queue counters:
        one row per queue, independent of the number of waiting jobs."""
        rows = conn.execute(select(TQ.tq_id, TQ.waiting, TQ.max_priority).where(TQ.waiting > 0))
        return [QueueLoad(int(r[0]), int(r[1]), int(r[2])) for r in rows]

    def queue_ids(self, conn: Connection) -> list[int]:
        """Every task queue, empty or not, in ``tq_id`` order."""
        return [int(r[0]) for r in conn.execute(select(TQ.tq_id).order_by(TQ.tq_id))]

    def claim(self, conn: Connection, tq_id: int, *, settle: bool = True) -> int | None:
        """Atomically take the highest-priority, oldest job out of a queue; None if empty.

        Both steps walk the (tq_id, priority, job_id) index in one direction: first the best
        priority present, then the oldest job of that priority. (A mixed ``ORDER BY priority
        DESC, job_id`` sorts the whole queue, and MariaDB then returns no row at all with
        SKIP LOCKED as soon as the first one is locked.) On SQLite the caller holds the single
        write lock, so select-then-delete is atomic. Elsewhere the row is locked with SKIP
        LOCKED so concurrent claimers take other rows, and the DELETE's row count proves the
        claim; when every job of a priority is being claimed by others, the next lower
        priority is tried. The queue's counters follow (:meth:`_settle`); a queue found empty
        whose counter says otherwise is corrected, so that no matcher keeps choosing it.
        With ``settle=False`` the caller counts the claim out later, in the same transaction,
        with :meth:`settle` (one call for many claims: the queue rows locked once, in order),
        and passes it the queues found empty, to be checked after the counts.
        """
        if not self.skip_locked and conn.dialect.delete_returning:
            job_id = conn.execute(_TAKE_BEST, {"q": tq_id}).scalar()
            if job_id is None:
                if settle:
                    self._check_empty(conn, tq_id)
                return None
            if settle:
                self._settle(conn, {tq_id: 1})
            return int(job_id)
        below: int | None = None
        while True:
            if below is None:
                priority = conn.execute(_BEST, {"q": tq_id}).scalar()
            else:
                priority = conn.execute(_BEST_BELOW, {"q": tq_id, "below": below}).scalar()
            if priority is None:
                if below is None and settle:
                    self._check_empty(conn, tq_id)
                return None
            oldest = _OLDEST_SKIP_LOCKED if self.skip_locked else _OLDEST
            job_id = conn.execute(oldest, {"q": tq_id, "p": priority}).scalar_one_or_none()
            if job_id is not None and conn.execute(_TAKE, {"j": job_id}).rowcount == 1:
                if settle:
                    self._settle(conn, {tq_id: 1})
                return int(job_id)
            below = int(priority)

    def _check_empty(self, conn: Connection, tq_id: int) -> None:
        """The queue showed no job: make sure its counters say so (cheap when they do)."""
        row = conn.execute(select(TQ.waiting, TQ.max_priority).where(TQ.tq_id == tq_id)).first()
        if row is not None and (row.waiting != 0 or row.max_priority != 0):
            self._settle(conn, {tq_id: 0})  # under the row lock: corrects a real drift only

    def drop_empty(self, conn: Connection, limit: int = 1000) -> int:
        """Remove task queues that hold no job; one that gets a job meanwhile is kept."""
        empty = (TQ.waiting == 0) & ~exists().where(tq_jobs.c.tq_id == TQ.tq_id)
        ids = [r[0] for r in conn.execute(select(TQ.tq_id).where(TQ.waiting == 0).limit(limit))]
        dropped = 0
        for tq_id in ids:
            try:
                with conn.begin_nested():
                    dropped += conn.execute(
                        delete(task_queues).where(TQ.tq_id == tq_id, empty)
                    ).rowcount
            except IntegrityError:
                pass  # a job arrived meanwhile (foreign key RESTRICT)
        return dropped

    def check_counters(
        self, conn: Connection, tq_ids: Sequence[int] | None = None, *, repair: bool = True
    ) -> list[CounterDrift]:
        """Recount the given queues (all when None) from their ``tq_jobs`` rows; return those
        whose counters differed, corrected when ``repair``. Locks the queue rows first
        (MariaDB/PostgreSQL), so the recount and the counters describe the same jobs; costs
        O(jobs of these queues): an audit, not a hot path."""
        if tq_ids is None:
            tq_ids = self.queue_ids(conn)
        drifts: list[CounterDrift] = []
        for chunk in _chunks(sorted(tq_ids)):
            stored_stmt = select(TQ.tq_id, TQ.waiting, TQ.max_priority).where(TQ.tq_id.in_(chunk))
            if self.skip_locked:
                stored_stmt = stored_stmt.order_by(TQ.tq_id).with_for_update(key_share=True)
            stored = {r[0]: (int(r[1]), int(r[2])) for r in conn.execute(stored_stmt)}
            counted = {
                r[0]: (int(r[1]), int(r[2]))
                for r in conn.execute(
                    select(tq_jobs.c.tq_id, func.count(), func.max(tq_jobs.c.priority))
                    .where(tq_jobs.c.tq_id.in_(chunk))
                    .group_by(tq_jobs.c.tq_id)
                )
            }
            for q, now in stored.items():
                actual = counted.get(q, (0, 0))
                if now != actual:
                    drifts.append(CounterDrift(q, now, actual))
        if repair and drifts:
            conn.execute(_SET, [{"q": d.tq_id, "w": d.actual[0], "p": d.actual[1]} for d in drifts])
            for d in drifts:
                log.warning(
                    "task queue %s counters %s, counted %s: repaired", d.tq_id, d.stored, d.actual
                )
        return drifts
