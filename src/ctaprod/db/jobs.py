"""Job rows, descriptions, history and parameters. Bulk-first; the caller owns the transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Float,
    Integer,
    Row,
    RowMapping,
    Select,
    String,
    any_,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql import ColumnElement
from sqlalchemy.types import TypeEngine

from ctaprod.core.job_states import JobStatus
from ctaprod.core.statemachine import Transition
from ctaprod.db.statechange import ConditionalWriter, StatusWrite
from ctaprod.db.tables import job_descriptions, job_history, job_parameters, jobs, pilots
from ctaprod.db.types import BigId


@dataclass(frozen=True)
class JobState:
    job_id: int
    status: JobStatus
    owner: str
    owner_group: str
    pilot_id: int | None
    reschedule_count: int
    kill_requested: bool


STATE_COLUMNS = (
    jobs.c.job_id,
    jobs.c.status,
    jobs.c.owner,
    jobs.c.owner_group,
    jobs.c.pilot_id,
    jobs.c.reschedule_count,
    jobs.c.kill_requested,
)

# Job IDs per IN list: one statement for any API batch (up to 10,000 items), within the bind
# parameter limits of every engine (SQLite before 3.32 allows only 999).
IN_CHUNK = 900 if sqlite3.sqlite_version_info < (3, 32, 0) else 10_000

# Statements built once (SQLAlchemy then reuses their cache keys and compiled forms).
_STATES = select(*STATE_COLUMNS).where(jobs.c.job_id.in_(bindparam("ids", expanding=True)))
_STATES_LOCKED = _STATES.with_for_update()
_STATES_SKIP_LOCKED = _STATES.with_for_update(skip_locked=True)
# A beat without figures (zero: a keep-alive before the payload, an older wrapper during a
# transfer) leaves the last figures known in place instead of zeroing them.
_HEARTBEATS = (
    update(jobs)
    .where(jobs.c.job_id == bindparam("b_id"))
    .values(
        heartbeat_time=bindparam("heartbeat_time"),
        **{
            name: func.coalesce(func.nullif(bindparam(name, type_=type_), 0), jobs.c[name])
            for name, type_ in (
                ("cpu_seconds", Float()),
                ("wall_seconds", Float()),
                ("peak_rss_bytes", BigId),
            )
        },
    )
)
# Columns a status report may set without a status change; a None leaves the column as it is.
REPORT_FIELDS: dict[str, TypeEngine[Any]] = {
    "application_status": String(),
    "minor_status": String(),
    "exit_code": Integer(),
    "cpu_seconds": Float(),
    "wall_seconds": Float(),
    "peak_rss_bytes": BigId,
}
_REPORT_FIELDS = (
    update(jobs)
    .where(jobs.c.job_id == bindparam("b_id"))
    .values(
        last_update=bindparam("b_now"),
        **{
            name: func.coalesce(bindparam(f"v_{name}", type_=type_), jobs.c[name])
            for name, type_ in REPORT_FIELDS.items()
        },
    )
)
_DESCRIPTIONS = select(job_descriptions.c.job_id, job_descriptions.c.description).where(
    job_descriptions.c.job_id.in_(bindparam("ids", expanding=True))
)
_STATUSES = ARRAY(String())
_INSERT_HISTORY = insert(job_history)
_INSERT_PARAMETERS = insert(job_parameters)
_DELETE_PARAMETER = delete(job_parameters).where(
    job_parameters.c.job_id == bindparam("b_job"), job_parameters.c.name == bindparam("b_name")
)


class JobDB:
    """Intention-named queries on the job tables."""

    def __init__(self, for_update: bool) -> None:
        # Row locks are only needed where the engine has concurrent writers (not SQLite).
        self.for_update = for_update
        # Status changes: the minor status is the change's reason, last_update its time.
        self._writer = ConditionalWriter(jobs, "job_id", reason="minor_status")

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
            conn.execute(_INSERT_HISTORY, rows)

    def states(
        self, conn: Connection, job_ids: Sequence[int], *, skip_locked: bool = False
    ) -> dict[int, JobState]:
        """The current state of each existing job among ``job_ids`` (row-locked where needed).

        With ``skip_locked``, rows another transaction holds are left out, not waited for.
        """
        out: dict[int, JobState] = {}
        stmt: Select[Any] = _STATES
        if self.for_update:
            stmt = _STATES_SKIP_LOCKED if skip_locked else _STATES_LOCKED
        for chunk in _chunks(job_ids, IN_CHUNK):
            for job_id, status, owner, group, pilot_id, reschedules, kill in conn.execute(
                stmt, {"ids": list(chunk)}
            ):
                out[job_id] = JobState(
                    job_id, JobStatus(status), owner, group, pilot_id, reschedules, bool(kill)
                )
        return out

    def apply(
        self, conn: Connection, changes: Sequence[Transition[JobStatus]], now: datetime
    ) -> set[int]:
        """Write checked status changes (at most one per job) with UPDATEs conditional on the
        status read, in bulk; return the IDs whose UPDATE matched nothing (the job changed
        meanwhile). The history is the door's hook, not written here."""
        return self._writer.apply(
            conn,
            [StatusWrite(c.ident, c.old.value, c.new.value, c.reason, c.values) for c in changes],
            now,
        )

    def update_reported(
        self, conn: Connection, rows: Sequence[Mapping[str, Any]], now: datetime
    ) -> None:
        """Set the reported columns of many jobs (no status change) in one executemany UPDATE.

        Each row has ``job_id`` and any of ``REPORT_FIELDS``; a missing or None field leaves the
        column as it is. ``last_update`` becomes ``now``.
        """
        if rows:
            conn.execute(
                _REPORT_FIELDS,
                [
                    {"b_id": r["job_id"], "b_now": now}
                    | {f"v_{name}": r.get(name) for name in REPORT_FIELDS}
                    for r in rows
                ],
            )

    def record_heartbeats(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Store the last heartbeat time and usage figures of many jobs in one statement."""
        if rows:
            conn.execute(_HEARTBEATS, list(rows))

    def descriptions(self, conn: Connection, job_ids: Sequence[int]) -> dict[int, str]:
        """The stored descriptions (JSON) of the jobs among ``job_ids`` that have one."""
        out: dict[int, str] = {}
        for chunk in _chunks(job_ids, IN_CHUNK):
            rows = conn.execute(_DESCRIPTIONS, {"ids": list(chunk)})
            out.update({int(r[0]): r[1] for r in rows})
        return out

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
        self.set_many_parameters(conn, {job_id: params})

    def set_many_parameters(
        self, conn: Connection, params: Mapping[int, Mapping[str, str]]
    ) -> None:
        """Upsert the parameters of many jobs: one executemany DELETE, one executemany INSERT."""
        rows = [
            {"job_id": job_id, "name": k, "value": v}
            for job_id, named in params.items()
            for k, v in named.items()
        ]
        if not rows:
            return
        conn.execute(_DELETE_PARAMETER, [{"b_job": r["job_id"], "b_name": r["name"]} for r in rows])
        conn.execute(_INSERT_PARAMETERS, rows)

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
        owner: str | None = None,
        status: str | None = None,
        after: int | None,
        before: int | None,
        limit: int,
        descending: bool,
        columns: Sequence[ColumnElement[Any]] | None = None,
    ) -> list[Row[Any]]:
        """One keyset page of the jobs of ``owner`` in ``status`` (None: any) matching
        ``filters``, ordered by job ID; ``columns`` (default: all) of each.

        A deferred join: the page's job IDs come from an index-only scan of (status, job_id)
        or (owner, status, job_id) that stops after ``limit`` entries, then only those rows
        are read by primary key. Selecting whole rows in one query made MariaDB and PostgreSQL
        walk the primary key and filter (a status found only among old jobs read ~200,000 rows
        of a 1M-job table) or skip the index entries above the cursor.
        """
        ids = select(jobs.c.job_id).where(*filters)
        key: list[ColumnElement[Any]] = [jobs.c.job_id]
        if owner is not None:
            ids = ids.where(jobs.c.owner == owner)
        if status is not None and owner is None and conn.dialect.name == "postgresql":
            # PostgreSQL drops an equality-filtered column from the order and then prefers
            # walking the primary key, filtering, when it cannot know the status is only
            # found among old jobs. Ordering by (status, job_id) with ``= ANY`` (same rows,
            # same order) leaves it the (status, job_id) index as the one path without a sort.
            ids = ids.where(jobs.c.status == any_(bindparam("key_status", [status], _STATUSES)))
            key = [jobs.c.status, jobs.c.job_id]
        elif status is not None:
            ids = ids.where(jobs.c.status == status)
        if after is not None:
            ids = ids.where(jobs.c.job_id > after)
        if before is not None:
            ids = ids.where(jobs.c.job_id < before)
        page = (
            ids.order_by(*(c.desc() if descending else c.asc() for c in key))
            .limit(limit)
            .subquery("page")
        )
        stmt = (
            select(*(columns if columns is not None else jobs.c))
            .join_from(page, jobs, jobs.c.job_id == page.c.job_id)
            .order_by(page.c.job_id.desc() if descending else page.c.job_id.asc())
        )
        return list(conn.execute(stmt))

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
