"""Read-only aggregates of production validation (``logic.prod_validation``) that the other
DB classes do not offer: inputs shared by tasks, failures by reason, job statuses.

Each is one statement the database aggregates, so the result is as small as the problems
found, whatever the number of tasks. Methods never commit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, and_, case, distinct, exists, func, select

from ctaprod.db.tables import catalog_files, job_history, jobs, trans_task_files, trans_tasks

IN_CHUNK = 5_000

K, TTF, H, J = trans_tasks.c, trans_task_files.c, job_history.c, jobs.c


@dataclass(frozen=True)
class SharedInput:
    """An input file held by more than one task of a transformation that counts."""

    file_id: int
    done_tasks: int  # tasks holding it that ended Done
    tasks_with_outputs: int  # tasks holding it whose job registered files
    first_task: int
    last_task: int


@dataclass(frozen=True)
class FailureRow:
    minor_status: str
    application_status: str
    failures: int
    jobs: int
    still_failed: int


class ValidationDB:
    """Aggregates over one transformation's tasks, jobs and outputs."""

    def shared_inputs(self, conn: Connection, trans_id: int) -> Iterator[SharedInput]:
        """Input files in two Done tasks, or in two tasks that both registered outputs (two
        outputs for one input group), streamed."""
        has_outputs = exists().where(catalog_files.c.job_id == K.job_id)
        done = func.sum(case((K.status == "Done", 1), else_=0))
        with_outputs = func.sum(case((has_outputs, 1), else_=0))
        stmt = (
            select(TTF.file_id, done, with_outputs, func.min(K.task_id), func.max(K.task_id))
            .join(trans_tasks, K.task_id == TTF.task_id)
            .where(K.trans_id == trans_id)
            .group_by(TTF.file_id)
            .having((done > 1) | (with_outputs > 1))
            .order_by(TTF.file_id)
        )
        for row in conn.execute(stmt):
            yield SharedInput(*(int(v) for v in row))

    def failure_groups(self, conn: Connection, trans_id: int) -> Iterator[FailureRow]:
        """The Failed states recorded for the jobs of a transformation's tasks, grouped by
        (minor status, application status), most jobs first."""
        jobs_n = func.count(distinct(H.job_id))
        still = func.count(distinct(case((J.status == "Failed", H.job_id), else_=None)))
        stmt = (
            select(H.minor_status, H.application_status, func.count(), jobs_n, still)
            .join(trans_tasks, K.job_id == H.job_id)
            .join(jobs, J.job_id == H.job_id)
            .where(K.trans_id == trans_id, H.status == "Failed")
            .group_by(H.minor_status, H.application_status)
            .order_by(jobs_n.desc(), H.minor_status, H.application_status)
        )
        for minor, app, failures, n, failed in conn.execute(stmt):
            yield FailureRow(str(minor or ""), str(app or ""), int(failures), int(n), int(failed))

    def failure_examples(
        self, conn: Connection, trans_id: int, minor: str, app: str, limit: int
    ) -> list[int]:
        """A few jobs (lowest ids) of one failure group."""
        stmt = (
            select(H.job_id)
            .distinct()
            .join(trans_tasks, K.job_id == H.job_id)
            .where(
                and_(
                    K.trans_id == trans_id,
                    H.status == "Failed",
                    H.minor_status == minor,
                    H.application_status == app,
                )
            )
            .order_by(H.job_id)
            .limit(limit)
        )
        return [int(r[0]) for r in conn.execute(stmt)]

    def job_statuses(
        self, conn: Connection, job_ids: Sequence[int]
    ) -> dict[int, tuple[str, str, str]]:
        """``(status, minor status, application status)`` of existing jobs."""
        out: dict[int, tuple[str, str, str]] = {}
        ids = sorted(set(job_ids))
        for i in range(0, len(ids), IN_CHUNK):
            stmt = select(J.job_id, J.status, J.minor_status, J.application_status).where(
                J.job_id.in_(ids[i : i + IN_CHUNK])
            )
            for job_id, status, minor, app in conn.execute(stmt):
                out[int(job_id)] = (str(status), str(minor or ""), str(app or ""))
        return out
