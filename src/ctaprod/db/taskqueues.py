"""Task queues: waiting jobs grouped by identical requirements, and the atomic job claim."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, exists, func, insert, select
from sqlalchemy.exc import IntegrityError

from ctaprod.core.matching import Requirements
from ctaprod.db.tables import task_queues, tq_jobs


@dataclass(frozen=True)
class QueueLoad:
    tq_id: int
    waiting: int
    max_priority: int


class TaskQueueDB:
    def __init__(self, skip_locked: bool) -> None:
        self.skip_locked = skip_locked

    def ensure_queues(
        self, conn: Connection, reqs: Sequence[Requirements], now: datetime
    ) -> dict[str, int]:
        """Return the tq_id of each requirement set, creating missing queues.

        Found queues are share-locked (MariaDB/PostgreSQL) until the caller commits, so that
        ``drop_empty`` cannot remove a queue a submission is about to fill; two submitters
        creating the same queue at once both end up with the one that won.
        """
        keys = {r.key(): r for r in sorted(reqs, key=Requirements.key)}  # fixed lock order
        found = self._ids(conn, list(keys))
        missing = [k for k in keys if k not in found]
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
        return found

    def _ids(self, conn: Connection, keys: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in range(0, len(keys), 900):
            stmt = select(task_queues.c.key, task_queues.c.tq_id).where(
                task_queues.c.key.in_(keys[i : i + 900])
            )
            if self.skip_locked:  # engines with row locks
                stmt = stmt.with_for_update(read=True)
            out.update({r.key: r.tq_id for r in conn.execute(stmt)})
        return out

    def enqueue(self, conn: Connection, entries: Sequence[Mapping[str, int]]) -> None:
        """Put jobs (job_id, tq_id, priority) into their queues."""
        if entries:
            conn.execute(insert(tq_jobs), list(entries))

    def dequeue(self, conn: Connection, job_ids: Sequence[int]) -> int:
        n = 0
        for i in range(0, len(job_ids), 900):
            n += conn.execute(
                delete(tq_jobs).where(tq_jobs.c.job_id.in_(job_ids[i : i + 900]))
            ).rowcount
        return n

    def queues(self, conn: Connection) -> dict[int, Requirements]:
        """All task queues with their requirements."""
        rows = conn.execute(select(task_queues.c.tq_id, task_queues.c.requirements))
        return {r.tq_id: Requirements.model_validate_json(r.requirements) for r in rows}

    def queue_requirements(
        self, conn: Connection, tq_ids: Sequence[int]
    ) -> dict[int, Requirements]:
        rows = conn.execute(
            select(task_queues.c.tq_id, task_queues.c.requirements).where(
                task_queues.c.tq_id.in_(list(tq_ids))
            )
        )
        return {r.tq_id: Requirements.model_validate_json(r.requirements) for r in rows}

    def loads(self, conn: Connection) -> list[QueueLoad]:
        """Waiting jobs and highest priority per non-empty queue."""
        rows = conn.execute(
            select(tq_jobs.c.tq_id, func.count(), func.max(tq_jobs.c.priority)).group_by(
                tq_jobs.c.tq_id
            )
        )
        return [QueueLoad(int(r[0]), int(r[1]), int(r[2])) for r in rows]

    def claim(self, conn: Connection, tq_id: int) -> int | None:
        """Atomically take the highest-priority, oldest job out of a queue; None if empty.

        Both steps walk the (tq_id, priority, job_id) index in one direction: first the best
        priority present, then the oldest job of that priority. (A mixed ``ORDER BY priority
        DESC, job_id`` sorts the whole queue, and MariaDB then returns no row at all with
        SKIP LOCKED as soon as the first one is locked.) On SQLite the caller holds the single
        write lock, so select-then-delete is atomic. Elsewhere the row is locked with SKIP
        LOCKED so concurrent claimers take other rows, and the DELETE's row count proves the
        claim; when every job of a priority is being claimed by others, the next lower
        priority is tried.
        """
        below: int | None = None
        while True:
            best = select(func.max(tq_jobs.c.priority)).where(tq_jobs.c.tq_id == tq_id)
            if below is not None:
                best = best.where(tq_jobs.c.priority < below)
            priority = conn.execute(best).scalar()
            if priority is None:
                return None
            stmt = (
                select(tq_jobs.c.job_id)
                .where(tq_jobs.c.tq_id == tq_id, tq_jobs.c.priority == priority)
                .order_by(tq_jobs.c.job_id)
                .limit(1)
            )
            if self.skip_locked:
                stmt = stmt.with_for_update(skip_locked=True)
            job_id = conn.execute(stmt).scalar_one_or_none()
            if (
                job_id is not None
                and conn.execute(delete(tq_jobs).where(tq_jobs.c.job_id == job_id)).rowcount == 1
            ):
                return int(job_id)
            below = int(priority)

    def drop_empty(self, conn: Connection, limit: int = 1000) -> int:
        """Remove task queues that hold no job; one that gets a job meanwhile is kept."""
        empty = ~exists().where(tq_jobs.c.tq_id == task_queues.c.tq_id)
        ids = [r[0] for r in conn.execute(select(task_queues.c.tq_id).where(empty).limit(limit))]
        dropped = 0
        for tq_id in ids:
            try:
                with conn.begin_nested():
                    dropped += conn.execute(
                        delete(task_queues).where(task_queues.c.tq_id == tq_id, empty)
                    ).rowcount
            except IntegrityError:
                pass  # a job arrived meanwhile (foreign key RESTRICT)
        return dropped
