"""Job rows, descriptions, history and parameters. Bulk-first; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    RowMapping,
    String,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.sql import ColumnElement

from ctaprod.core.job_states import JobStatus
from ctaprod.db.tables import job_descriptions, job_history, job_parameters, jobs, pilots


@dataclass(frozen=True)
class JobState:
    job_id: int
    status: JobStatus
    owner: str
    owner_group: str
    pilot_id: int | None
    reschedule_count: int
    kill_requested: bool


@dataclass(frozen=True)
class Transition:
    """One applied status change, as recorded in the history."""

    job_id: int
    old: JobStatus
    new: JobStatus
    minor_status: str
    application_status: str | None = None
    values: Mapping[str, Any] | None = None  # other columns to set with the change


STATE_COLUMNS = (
    jobs.c.job_id,
    jobs.c.status,
    jobs.c.owner,
    jobs.c.owner_group,
    jobs.c.pilot_id,
    jobs.c.reschedule_count,
    jobs.c.kill_requested,
)


class JobDB:
    """Intention-named queries on the job tables."""

    def __init__(self, for_update: bool) -> None:
        # Row locks are only needed where the engine has concurrent writers (not SQLite).
        self.for_update = for_update

    def insert_jobs(
        self, conn: Connection, rows: Sequence[Mapping[str, Any]], descriptions: Sequence[str]
    ) -> list[int]:
        """Insert jobs and their descriptions; return the new job IDs in input order."""
        result = conn.execute(
            insert(jobs).returning(jobs.c.job_id, sort_by_parameter_order=True), list(rows)
        )
        ids = [r[0] for r in result]
        conn.execute(
            insert(job_descriptions),
            [{"job_id": i, "description": d} for i, d in zip(ids, descriptions, strict=True)],
        )
        return ids

    def add_history(self, conn: Connection, entries: Iterable[Mapping[str, Any]]) -> None:
        """Append history rows (job_id, status, minor_status, application_status, time, source)."""
        rows = list(entries)
        if rows:
            conn.execute(insert(job_history), rows)

    def states(
        self, conn: Connection, job_ids: Sequence[int], *, skip_locked: bool = False
    ) -> dict[int, JobState]:
        """The current state of each existing job among ``job_ids`` (row-locked where needed).

        With ``skip_locked``, rows another transaction holds are left out, not waited for.
        """
        out: dict[int, JobState] = {}
        for chunk in _chunks(job_ids, 900):
            stmt = select(*STATE_COLUMNS).where(jobs.c.job_id.in_(chunk))
            if self.for_update:
                stmt = stmt.with_for_update(skip_locked=skip_locked)
            for r in conn.execute(stmt):
                out[r.job_id] = JobState(
                    r.job_id,
                    JobStatus(r.status),
                    r.owner,
                    r.owner_group,
                    r.pilot_id,
                    r.reschedule_count,
                    bool(r.kill_requested),
                )
        return out

    def apply(
        self, conn: Connection, changes: Sequence[Transition], now: datetime, source: str
    ) -> int:
        """Apply checked transitions with conditional UPDATEs and record them in the history.

        Returns the number of rows changed; a change whose job left ``old`` meanwhile is
        skipped (the caller locked the rows, so this only happens on a logic error).
        """
        changed = 0
        plain = [c for c in changes if not c.values]
        if plain:
            stmt = (
                update(jobs)
                .where(jobs.c.job_id == bindparam("b_id"), jobs.c.status == bindparam("b_old"))
                .values(
                    status=bindparam("b_new"),
                    minor_status=bindparam("b_minor"),
                    application_status=func.coalesce(
                        bindparam("b_app", type_=String), jobs.c.application_status
                    ),
                    last_update=now,
                )
            )
            res = conn.execute(
                stmt,
                [
                    {
                        "b_id": c.job_id,
                        "b_old": c.old.value,
                        "b_new": c.new.value,
                        "b_minor": c.minor_status,
                        "b_app": c.application_status,
                    }
                    for c in plain
                ],
            )
            changed += res.rowcount
        for c in changes:
            if not c.values:
                continue
            values: dict[str, Any] = {
                "status": c.new.value,
                "minor_status": c.minor_status,
                "last_update": now,
                **c.values,
            }
            if c.application_status is not None:
                values["application_status"] = c.application_status
            res = conn.execute(
                update(jobs)
                .where(jobs.c.job_id == c.job_id, jobs.c.status == c.old.value)
                .values(**values)
            )
            changed += res.rowcount
        self.add_history(
            conn,
            (
                {
                    "job_id": c.job_id,
                    "status": c.new.value,
                    "minor_status": c.minor_status,
                    "application_status": c.application_status or "",
                    "time": now,
                    "source": source,
                }
                for c in changes
            ),
        )
        return changed

    def update_fields(
        self,
        conn: Connection,
        job_id: int,
        values: Mapping[str, Any],
        where_status: Iterable[JobStatus] | None = None,
    ) -> int:
        """Set columns of one job without a status change; returns rows changed."""
        stmt = update(jobs).where(jobs.c.job_id == job_id).values(**values)
        if where_status is not None:
            stmt = stmt.where(jobs.c.status.in_([s.value for s in where_status]))
        return conn.execute(stmt).rowcount

    def record_heartbeats(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Store the last heartbeat time and usage figures of many jobs in one statement."""
        conn.execute(
            update(jobs)
            .where(jobs.c.job_id == bindparam("b_id"))
            .values(
                heartbeat_time=bindparam("heartbeat_time"),
                cpu_seconds=bindparam("cpu_seconds"),
                wall_seconds=bindparam("wall_seconds"),
                peak_rss_bytes=bindparam("peak_rss_bytes"),
            ),
            list(rows),
        )

    def description(self, conn: Connection, job_id: int) -> str | None:
        return conn.execute(
            select(job_descriptions.c.description).where(job_descriptions.c.job_id == job_id)
        ).scalar_one_or_none()

    def get(self, conn: Connection, job_id: int) -> RowMapping | None:
        row = conn.execute(select(jobs).where(jobs.c.job_id == job_id)).mappings().first()
        return row

    def history(self, conn: Connection, job_id: int) -> list[RowMapping]:
        return list(
            conn.execute(
                select(job_history).where(job_history.c.job_id == job_id).order_by(job_history.c.id)
            ).mappings()
        )

    def set_parameters(self, conn: Connection, job_id: int, params: Mapping[str, str]) -> None:
        """Upsert job parameters (delete then insert: portable and done in one transaction)."""
        if not params:
            return
        conn.execute(
            delete(job_parameters).where(
                job_parameters.c.job_id == job_id, job_parameters.c.name.in_(list(params))
            )
        )
        conn.execute(
            insert(job_parameters),
            [{"job_id": job_id, "name": k, "value": v} for k, v in params.items()],
        )

    def parameters(self, conn: Connection, job_id: int) -> dict[str, str]:
        rows = conn.execute(
            select(job_parameters.c.name, job_parameters.c.value).where(
                job_parameters.c.job_id == job_id
            )
        )
        return {r.name: r.value for r in rows}

    def search(
        self,
        conn: Connection,
        filters: Sequence[ColumnElement[bool]],
        *,
        after: int | None,
        before: int | None,
        limit: int,
        descending: bool,
    ) -> list[RowMapping]:
        """One keyset page of jobs matching ``filters``, ordered by job ID."""
        stmt = select(jobs).where(*filters)
        if after is not None:
            stmt = stmt.where(jobs.c.job_id > after)
        if before is not None:
            stmt = stmt.where(jobs.c.job_id < before)
        order = jobs.c.job_id.desc() if descending else jobs.c.job_id.asc()
        return list(conn.execute(stmt.order_by(order).limit(limit)).mappings())

    def count(self, conn: Connection, filters: Sequence[ColumnElement[bool]]) -> int:
        return int(
            conn.execute(select(func.count()).select_from(jobs).where(*filters)).scalar_one()
        )

    def summary(
        self, conn: Connection, filters: Sequence[ColumnElement[bool]], by: str
    ) -> list[tuple[str, str, int]]:
        """Counts grouped by ``by`` (a column name) and status."""
        col = jobs.c[by]
        rows = conn.execute(
            select(col, jobs.c.status, func.count()).where(*filters).group_by(col, jobs.c.status)
        )
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    def stale(
        self, conn: Connection, status: JobStatus, column: str, older_than: datetime, limit: int
    ) -> list[int]:
        """IDs of jobs in ``status`` whose ``column`` time is older than ``older_than``."""
        col = jobs.c[column]
        rows = conn.execute(
            select(jobs.c.job_id)
            .where(jobs.c.status == status.value, col < older_than)
            .order_by(col)
            .limit(limit)
        )
        return [r[0] for r in rows]

    def running_without_heartbeat(
        self, conn: Connection, statuses: Sequence[JobStatus], older_than: datetime, limit: int
    ) -> list[int]:
        """Jobs in ``statuses`` whose last heartbeat (or, without one, last update) is old."""
        hb = func.coalesce(jobs.c.heartbeat_time, jobs.c.last_update)
        rows = conn.execute(
            select(jobs.c.job_id)
            .where(jobs.c.status.in_([s.value for s in statuses]), hb < older_than)
            .limit(limit)
        )
        return [r[0] for r in rows]

    def delete_jobs(self, conn: Connection, job_ids: Sequence[int]) -> int:
        """Remove jobs and everything hanging off them."""
        n = 0
        for chunk in _chunks(job_ids, 900):
            for table in (job_history, job_parameters, job_descriptions):
                conn.execute(delete(table).where(table.c.job_id.in_(chunk)))
            n += conn.execute(delete(jobs).where(jobs.c.job_id.in_(chunk))).rowcount
        return n

    # --- agents: stalled jobs and cleaning (candidates are row-locked with SKIP LOCKED where
    # the engine has concurrent writers, so the caller acts on rows nobody else is changing)
    def _pick(
        self,
        conn: Connection,
        where: Sequence[ColumnElement[bool]],
        order: ColumnElement[Any],
        limit: int,
        replica: int,
        replicas: int,
        lock: bool,
        *extra: ColumnElement[Any],
    ) -> list[RowMapping]:
        stmt = select(
            jobs.c.job_id,
            jobs.c.status,
            jobs.c.pilot_id,
            jobs.c.heartbeat_time,
            jobs.c.last_update,
            *extra,
        ).where(*where)
        if replicas > 1:
            stmt = stmt.where(jobs.c.job_id % replicas == replica)
        stmt = stmt.order_by(order).limit(limit)
        if lock and self.for_update:
            stmt = stmt.with_for_update(skip_locked=True)
        return list(conn.execute(stmt).mappings())

    def silent_jobs(
        self,
        conn: Connection,
        status: JobStatus,
        older_than: datetime,
        *,
        limit: int,
        replica: int = 0,
        replicas: int = 1,
        lock: bool = False,
    ) -> list[RowMapping]:
        """Jobs in ``status`` with neither a heartbeat nor an update since ``older_than``."""
        hb = jobs.c.heartbeat_time
        return self._pick(
            conn,
            [
                jobs.c.status == status.value,
                jobs.c.last_update < older_than,
                hb.is_(None) | (hb < older_than),
            ],
            jobs.c.last_update,
            limit,
            replica,
            replicas,
            lock,
        )

    def matched_unstarted(
        self,
        conn: Connection,
        older_than: datetime,
        *,
        limit: int,
        replica: int = 0,
        replicas: int = 1,
        lock: bool = False,
    ) -> list[RowMapping]:
        """Matched jobs without a heartbeat since their match, matched before ``older_than``."""
        hb = jobs.c.heartbeat_time
        return self._pick(
            conn,
            [
                jobs.c.status == JobStatus.MATCHED.value,
                jobs.c.last_update < older_than,
                hb.is_(None) | (hb <= jobs.c.last_update),
            ],
            jobs.c.last_update,
            limit,
            replica,
            replicas,
            lock,
        )

    def matched_silent(
        self,
        conn: Connection,
        older_than: datetime,
        *,
        limit: int,
        replica: int = 0,
        replicas: int = 1,
        lock: bool = False,
    ) -> list[RowMapping]:
        """Matched jobs that sent heartbeats after their match, but none since ``older_than``."""
        hb = jobs.c.heartbeat_time
        return self._pick(
            conn,
            [jobs.c.status == JobStatus.MATCHED.value, hb > jobs.c.last_update, hb < older_than],
            jobs.c.heartbeat_time,
            limit,
            replica,
            replicas,
            lock,
        )

    def stalled_to_settle(
        self,
        conn: Connection,
        heartbeat_before: datetime,
        alive: Iterable[str],
        *,
        limit: int,
        replica: int = 0,
        replicas: int = 1,
        lock: bool = False,
    ) -> list[RowMapping]:
        """Stalled jobs whose pilot is gone (no pilot row in ``alive`` statuses) or whose last
        heartbeat (else last update) is older than ``heartbeat_before``; rows carry
        ``pilot_alive``."""
        pilot_alive = (
            select(pilots.c.pilot_id)
            .where(pilots.c.pilot_id == jobs.c.pilot_id, pilots.c.status.in_(list(alive)))
            .exists()
        )
        last = func.coalesce(jobs.c.heartbeat_time, jobs.c.last_update)
        return self._pick(
            conn,
            [jobs.c.status == JobStatus.STALLED.value, (last < heartbeat_before) | ~pilot_alive],
            jobs.c.job_id,
            limit,
            replica,
            replicas,
            lock,
            pilot_alive.label("pilot_alive"),
        )

    def finished_before(
        self,
        conn: Connection,
        statuses: Iterable[JobStatus],
        older_than: datetime,
        *,
        limit: int,
        replica: int = 0,
        replicas: int = 1,
        lock: bool = False,
    ) -> list[int]:
        """IDs of jobs in ``statuses`` last changed before ``older_than`` (oldest first)."""
        rows = self._pick(
            conn,
            [jobs.c.status.in_([s.value for s in statuses]), jobs.c.last_update < older_than],
            jobs.c.last_update,
            limit,
            replica,
            replicas,
            lock,
        )
        return [int(r["job_id"]) for r in rows]


def _chunks(seq: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]
