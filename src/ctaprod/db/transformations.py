"""Transformations, their files, tasks, task inputs and log (SQLAlchemy Core).

Bulk-first; the caller owns the transaction; methods never commit. Status changes of
transformations, transformation files and tasks do not happen here: they go through the
doors of ``logic.trans_states`` (the locked reads below, the conditional UPDATEs of
``db.statechange``). This module writes what is not a status change: new rows (a
transformation, attached files, tasks with their inputs), the log, counters.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    RowMapping,
    Select,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import mysql, postgresql

from ctaprod.db.tables import (
    catalog_files,
    trans_dir_scans,
    trans_files,
    trans_log,
    trans_task_files,
    trans_tasks,
    transformations,
)

T = transformations.c
F = trans_files.c
K = trans_tasks.c
IN_CHUNK = 5_000
Rows = dict[int, RowMapping]


@dataclass(frozen=True)
class NewTask:
    """A task to create: its input files (none for MCSimulation) and run number."""

    file_ids: Sequence[int] = ()
    run_number: int | None = None


class TransformationDB:
    """Tables of the transformation system."""

    def __init__(self, for_update: bool) -> None:
        # MariaDB/PostgreSQL lock rows read for a change (SQLite serializes write
        # transactions instead).
        self.for_update = for_update

    # --- transformations ----------------------------------------------------------------
    def insert(self, conn: Connection, row: Mapping[str, Any]) -> int:
        """A new transformation; IntegrityError if the name is taken."""
        res = conn.execute(insert(transformations).returning(T.trans_id), [dict(row)])
        return int(res.scalar_one())

    def get(self, conn: Connection, trans_id: int) -> RowMapping | None:
        return (
            conn.execute(select(transformations).where(T.trans_id == trans_id)).mappings().first()
        )

    def by_name(self, conn: Connection, name: str) -> RowMapping | None:
        return conn.execute(select(transformations).where(T.name == name)).mappings().first()

    def read_locked(self, conn: Connection, ids: Sequence[int]) -> Rows:
        """Rows of these transformations, locked for update where the engine has locks."""
        return self._read(conn, transformations, T.trans_id, ids)

    def lock_for_work(self, conn: Connection, trans_id: int) -> RowMapping | None:
        """The row of a transformation locked for one agent's turn on it; None if another
        replica holds it (SKIP LOCKED) or it does not exist. SQLite: the write lock."""
        stmt = select(transformations).where(T.trans_id == trans_id)
        if self.for_update:
            stmt = stmt.with_for_update(skip_locked=True)
        return conn.execute(stmt).mappings().first()

    def search(
        self,
        conn: Connection,
        *,
        statuses: Sequence[str] = (),
        types: Sequence[str] = (),
        owner: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[RowMapping]:
        stmt = select(transformations).where(T.trans_id > after)
        if statuses:
            stmt = stmt.where(T.status.in_(list(statuses)))
        if types:
            stmt = stmt.where(T.type.in_(list(types)))
        if owner is not None:
            stmt = stmt.where(T.owner == owner)
        return list(conn.execute(stmt.order_by(T.trans_id).limit(limit)).mappings())

    def ids_in(self, conn: Connection, statuses: Sequence[str]) -> list[int]:
        stmt = select(T.trans_id).where(T.status.in_(list(statuses))).order_by(T.trans_id)
        return [int(r[0]) for r in conn.execute(stmt)]

    def set_fields(self, conn: Connection, trans_id: int, now: datetime, **values: Any) -> None:
        """Write non-status columns (query, definition, input_complete, ...)."""
        conn.execute(
            update(transformations).where(T.trans_id == trans_id).values(last_update=now, **values)
        )

    def count_tasks_created(self, conn: Connection, trans_id: int, n: int) -> int:
        """Add ``n`` to the tasks made so far; returns the count before (the first run number
        of an MCSimulation batch is derived from it). Call with the row locked."""
        before = conn.execute(select(T.tasks_created).where(T.trans_id == trans_id)).scalar_one()
        conn.execute(
            update(transformations)
            .where(T.trans_id == trans_id)
            .values(tasks_created=T.tasks_created + n)
        )
        return int(before)

    # --- log ----------------------------------------------------------------------------
    def add_log(
        self,
        conn: Connection,
        entries: Iterable[tuple[int, str, str, str]],
        now: datetime,
    ) -> None:
        """Append ``(trans_id, author, action, message)`` entries."""
        rows = [
            {"trans_id": t, "author": a[:128], "action": act[:32], "message": m[:2048], "time": now}
            for t, a, act, m in entries
        ]
        if rows:
            conn.execute(insert(trans_log), rows)

    def log(self, conn: Connection, trans_id: int, limit: int = 1000) -> list[RowMapping]:
        stmt = (
            select(trans_log)
            .where(trans_log.c.trans_id == trans_id)
            .order_by(trans_log.c.id.desc())
            .limit(limit)
        )
        return list(reversed(list(conn.execute(stmt).mappings())))

    # --- files --------------------------------------------------------------------------
    def attach(
        self, conn: Connection, trans_id: int, file_ids: Iterable[int], status: str, now: datetime
    ) -> int:
        """Attach files (as ``status``, i.e. Unused); those already attached are left as
        they are, also when a concurrent transaction attaches them (INSERT ... that ignores
        the duplicate key). Returns how many rows were added."""
        ids = sorted(set(file_ids))
        if ids and self._limits(conn, [trans_id]):
            ids = sorted(f for _, f in self._within_limits(conn, {(trans_id, f) for f in ids}))
        added = 0
        for chunk in _chunks(ids):
            rows = [
                {"trans_id": trans_id, "file_id": f, "status": status, "last_update": now}
                for f in chunk
            ]
            added += self._insert_rows(conn, rows)
        return added

    def attach_many(
        self, conn: Connection, pairs: Iterable[tuple[int, int]], status: str, now: datetime
    ) -> int:
        """Attach ``(trans_id, file_id)`` pairs (see :meth:`attach`)."""
        wanted = set(pairs)
        if wanted and self._limits(conn, sorted({t for t, _ in wanted})):
            wanted = self._within_limits(conn, wanted)
        rows = [
            {"trans_id": t, "file_id": f, "status": status, "last_update": now}
            for t, f in sorted(wanted)
        ]
        added = 0
        for i in range(0, len(rows), IN_CHUNK):
            added += self._insert_rows(conn, rows[i : i + IN_CHUNK])
        return added

    @staticmethod
    def _limits(conn: Connection, trans_ids: Sequence[int]) -> dict[int, int]:
        """The input limits (test mode) of those of ``trans_ids`` that have one."""
        out: dict[int, int] = {}
        for chunk in _chunks(sorted(set(trans_ids))):
            stmt = select(T.trans_id, T.input_limit).where(
                T.trans_id.in_(chunk), T.input_limit.is_not(None)
            )
            out.update({int(t): int(n) for t, n in conn.execute(stmt)})
        return out

    def _within_limits(self, conn: Connection, pairs: set[tuple[int, int]]) -> set[tuple[int, int]]:
        """The pairs left once each limited transformation (``input_limit``, test mode) takes
        new files only up to its limit, lowest file ids first. Exact under the attach lock
        (``logic.trans_trigger.lock_for_attach``) that creations and the trigger take."""
        limits = self._limits(conn, sorted({t for t, _ in pairs}))
        kept = {p for p in pairs if p[0] not in limits}
        for tid, limit in limits.items():
            have = conn.execute(
                select(func.count()).select_from(trans_files).where(F.trans_id == tid)
            ).scalar_one()
            room = limit - int(have)
            if room <= 0:
                continue
            wanted = sorted(f for t, f in pairs if t == tid)
            there: set[int] = set()
            for chunk in _chunks(wanted):
                stmt = select(F.file_id).where(F.trans_id == tid, F.file_id.in_(chunk))
                there.update(int(r[0]) for r in conn.execute(stmt))
            kept.update((tid, f) for f in [f for f in wanted if f not in there][:room])
        return kept

    @staticmethod
    def _insert_rows(conn: Connection, rows: list[dict[str, Any]]) -> int:
        """INSERT that skips rows whose (trans_id, file_id) exists; the rows added."""
        if not rows:
            return 0
        name = conn.dialect.name
        if name == "postgresql":  # psycopg's executemany has no row count: count RETURNING
            stmt = (
                postgresql.insert(trans_files)
                .on_conflict_do_nothing(index_elements=["trans_id", "file_id"])
                .returning(F.id)
            )
            return len(conn.execute(stmt, rows).all())
        if name in ("mysql", "mariadb"):
            return int(conn.execute(mysql.insert(trans_files).prefix_with("IGNORE"), rows).rowcount)
        return int(conn.execute(insert(trans_files).prefix_with("OR IGNORE"), rows).rowcount)

    def file_rows(self, conn: Connection, ids: Sequence[int]) -> Rows:
        """Rows of trans_files by their ``id``, locked where the engine has locks."""
        return self._read(conn, trans_files, F.id, ids)

    def file_row_ids(
        self,
        conn: Connection,
        *,
        trans_id: int | None = None,
        file_ids: Sequence[int] = (),
        task_ids: Sequence[int] = (),
        statuses: Sequence[str] = (),
    ) -> list[int]:
        """The ``id`` of trans_files rows by transformation, file, task and status."""
        out: list[int] = []
        base = select(F.id)
        if trans_id is not None:
            base = base.where(F.trans_id == trans_id)
        if statuses:
            base = base.where(F.status.in_(list(statuses)))
        if file_ids:
            for chunk in _chunks(sorted(set(file_ids))):
                out += [int(r[0]) for r in conn.execute(base.where(F.file_id.in_(chunk)))]
        elif task_ids:
            for chunk in _chunks(sorted(set(task_ids))):
                out += [int(r[0]) for r in conn.execute(base.where(F.task_id.in_(chunk)))]
        else:
            out = [int(r[0]) for r in conn.execute(base.order_by(F.id))]
        return sorted(out)

    def unused(
        self, conn: Connection, trans_id: int, status: str, limit: int
    ) -> list[tuple[int, int, int]]:
        """``(row id, file_id, size)`` of the files of ``status`` (Unused), in the order they
        came; files gone from the catalog are left out."""
        stmt = (
            select(F.id, F.file_id, catalog_files.c.size)
            .join(catalog_files, catalog_files.c.file_id == F.file_id)
            .where(F.trans_id == trans_id, F.status == status)
            .order_by(F.id)
            .limit(limit)
        )
        return [(int(r[0]), int(r[1]), int(r[2] or 0)) for r in conn.execute(stmt)]

    def set_task_of_files(self, conn: Connection, assignment: Mapping[int, int | None]) -> None:
        """Point trans_files rows (by ``id``) at their task (None: no task)."""
        by_task: dict[int | None, list[int]] = {}
        for row_id, task_id in assignment.items():
            by_task.setdefault(task_id, []).append(row_id)
        for task_id, ids in by_task.items():
            for chunk in _chunks(sorted(ids)):
                conn.execute(update(trans_files).where(F.id.in_(chunk)).values(task_id=task_id))

    def link_task_files(
        self, conn: Connection, trans_id: int, row_ids: Sequence[int], first_task: int
    ) -> None:
        """Point trans_files rows at the task of their transformation, numbered
        ``first_task`` or later, that holds their file (the tasks were just made, their inputs
        written): one UPDATE per chunk, whatever the number of tasks, instead of one per task.
        Per row: an index probe on the file's tasks (a handful)."""
        ttf, k = trans_task_files.c, trans_tasks.c
        holder = (
            select(func.max(ttf.task_id))
            .join(trans_tasks, k.task_id == ttf.task_id)
            .where(
                ttf.file_id == F.file_id,
                ttf.task_id >= bindparam("first"),
                k.trans_id == bindparam("trans"),
            )
            .scalar_subquery()
        )
        stmt = (
            update(trans_files)
            .where(F.id.in_(bindparam("rows", expanding=True)))
            .values(task_id=holder)
        )
        for chunk in _chunks(sorted(set(row_ids))):
            conn.execute(stmt, {"rows": chunk, "first": first_task, "trans": trans_id})

    def file_counts(self, conn: Connection, trans_id: int) -> dict[str, int]:
        stmt = select(F.status, func.count()).where(F.trans_id == trans_id).group_by(F.status)
        return {str(s): int(n) for s, n in conn.execute(stmt)}

    def files(
        self,
        conn: Connection,
        trans_id: int,
        *,
        statuses: Sequence[str] = (),
        after: int = 0,
        limit: int = 100,
    ) -> list[RowMapping]:
        """Files of a transformation in attachment order (keyset on id)."""
        stmt = select(trans_files).where(F.trans_id == trans_id, F.id > after)
        if statuses:
            stmt = stmt.where(F.status.in_(list(statuses)))
        return list(conn.execute(stmt.order_by(F.id).limit(limit)).mappings())

    # --- tasks --------------------------------------------------------------------------
    def create_tasks(
        self,
        conn: Connection,
        trans_id: int,
        tasks: Sequence[NewTask],
        status: str,
        now: datetime,
    ) -> list[int]:
        """Insert tasks and their input files; returns their ids in the order given. The
        caller holds the transformation (``lock_for_work``)."""
        if not tasks:
            return []
        rows = [
            {
                "trans_id": trans_id,
                "status": status,
                "run_number": t.run_number,
                "created": now,
                "last_update": now,
            }
            for t in tasks
        ]
        # Not INSERT ... RETURNING: SQLAlchemy sends that one row at a time on SQLite to keep
        # the order. The caller holds the transformation (its row locked, or SQLite's write
        # lock): no one else adds tasks to it meanwhile, and each engine numbers the rows of
        # one executemany in order, so its new ids are those above the largest before.
        before = conn.execute(
            select(func.coalesce(func.max(K.task_id), 0)).where(K.trans_id == trans_id)
        ).scalar_one()
        conn.execute(insert(trans_tasks), rows)
        ids = [
            int(r[0])
            for r in conn.execute(
                select(K.task_id)
                .where(K.trans_id == trans_id, K.task_id > before)
                .order_by(K.task_id)
            )
        ]
        if len(ids) != len(tasks):
            raise RuntimeError(
                f"transformation {trans_id}: {len(tasks)} tasks inserted, {len(ids)} found: "
                "is another writer adding tasks without holding the transformation?"
            )
        inputs = [
            {"task_id": task_id, "file_id": f}
            for task_id, t in zip(ids, tasks, strict=True)
            for f in t.file_ids
        ]
        for i in range(0, len(inputs), IN_CHUNK):
            conn.execute(insert(trans_task_files), inputs[i : i + IN_CHUNK])
        return ids

    def tasks_by_id(self, conn: Connection, ids: Sequence[int]) -> Rows:
        """Rows of tasks by id, not locked (a read)."""
        out: Rows = {}
        for chunk in _chunks(sorted(set(ids))):
            stmt = select(trans_tasks).where(K.task_id.in_(chunk))
            out.update({int(r["task_id"]): r for r in conn.execute(stmt).mappings()})
        return out

    def task_rows(self, conn: Connection, ids: Sequence[int]) -> Rows:
        """Rows of tasks by id, locked where the engine has locks."""
        return self._read(conn, trans_tasks, K.task_id, ids)

    def task_ids(
        self,
        conn: Connection,
        *,
        trans_id: int | None = None,
        statuses: Sequence[str] = (),
        job_ids: Sequence[int] = (),
        request_ids: Sequence[int] = (),
        limit: int | None = None,
        skip_locked: bool = False,
    ) -> list[int]:
        """Task ids by transformation, status, job or request (oldest first). With
        ``skip_locked``, tasks another transaction holds are left out (agent replicas)."""
        stmt: Select[Any] = select(K.task_id)
        if trans_id is not None:
            stmt = stmt.where(K.trans_id == trans_id)
        if statuses:
            stmt = stmt.where(K.status.in_(list(statuses)))
        if job_ids:
            stmt = stmt.where(K.job_id.in_(sorted(set(job_ids))))
        if request_ids:
            stmt = stmt.where(K.request_id.in_(sorted(set(request_ids))))
        stmt = stmt.order_by(K.task_id)
        if limit is not None:
            stmt = stmt.limit(limit)
        if skip_locked and self.for_update:
            stmt = stmt.with_for_update(skip_locked=True)
        return [int(r[0]) for r in conn.execute(stmt)]

    def job_ids_of(self, conn: Connection, trans_id: int) -> list[int]:
        """Every job its tasks made (the current one of each task)."""
        stmt = select(K.job_id).where(K.trans_id == trans_id, K.job_id.is_not(None))
        return [int(r[0]) for r in conn.execute(stmt)]

    def failures_of_files(
        self, conn: Connection, trans_id: int, file_ids: Sequence[int]
    ) -> dict[int, list[str]]:
        """Per file: the errors of the failed tasks of this transformation that held it, oldest
        first (why a MaxReset file stopped being retried)."""
        ttf = trans_task_files.c
        out: dict[int, list[str]] = {}
        for chunk in _chunks(sorted(set(file_ids))):
            stmt = (
                select(ttf.file_id, K.error)
                .join(trans_tasks, K.task_id == ttf.task_id)
                .where(ttf.file_id.in_(chunk), K.trans_id == trans_id, K.status == "Failed")
                .order_by(ttf.file_id, K.task_id)
            )
            for file_id, error in conn.execute(stmt):
                out.setdefault(int(file_id), []).append(str(error))
        return out

    def task_inputs(self, conn: Connection, task_ids: Sequence[int]) -> dict[int, list[int]]:
        """The input file ids of each task."""
        out: dict[int, list[int]] = {t: [] for t in task_ids}
        for chunk in _chunks(sorted(set(task_ids))):
            stmt = (
                select(trans_task_files.c.task_id, trans_task_files.c.file_id)
                .where(trans_task_files.c.task_id.in_(chunk))
                .order_by(trans_task_files.c.task_id, trans_task_files.c.file_id)
            )
            for task_id, file_id in conn.execute(stmt):
                out[int(task_id)].append(int(file_id))
        return out

    def set_task_links(
        self,
        conn: Connection,
        links: Mapping[int, tuple[int | None, int | None]],
        now: datetime,
    ) -> None:
        """Record each task's ``(job_id, request_id)``: one UPDATE ... CASE per chunk (an
        executemany is one round trip per row with PyMySQL)."""
        ids = sorted(links)
        for chunk in _chunks(ids, 1000):
            values: dict[str, Any] = {"last_update": now}
            for col, pos in (("job_id", 0), ("request_id", 1)):
                given = {t: links[t][pos] for t in chunk if links[t][pos] is not None}
                values[col] = (
                    cast(case(given, value=K.task_id, else_=None), BigInteger) if given else None
                )
            conn.execute(update(trans_tasks).where(K.task_id.in_(chunk)).values(**values))

    def task_counts(self, conn: Connection, trans_id: int) -> dict[str, int]:
        stmt = select(K.status, func.count()).where(K.trans_id == trans_id).group_by(K.status)
        return {str(s): int(n) for s, n in conn.execute(stmt)}

    def tasks(
        self,
        conn: Connection,
        trans_id: int,
        *,
        statuses: Sequence[str] = (),
        after: int = 0,
        limit: int = 100,
    ) -> list[RowMapping]:
        stmt = select(trans_tasks).where(K.trans_id == trans_id, K.task_id > after)
        if statuses:
            stmt = stmt.where(K.status.in_(list(statuses)))
        return list(conn.execute(stmt.order_by(K.task_id).limit(limit)).mappings())

    # --- directory scans ------------------------------------------------------------------
    def add_dir_scans(
        self, conn: Connection, scans: Mapping[int, Iterable[str]], now: datetime
    ) -> None:
        """Queue directory metadata changes (dir_id -> fields changed) to page through."""
        rows = [
            {"dir_id": d, "fields": ",".join(sorted(set(f))), "after_file": 0, "created": now}
            for d, f in scans.items()
        ]
        if rows:
            conn.execute(insert(trans_dir_scans), rows)

    def dir_scans(self, conn: Connection, limit: int = 10) -> list[RowMapping]:
        """The oldest queued directory scans, locked (SKIP LOCKED: replicas take others)."""
        stmt = select(trans_dir_scans).order_by(trans_dir_scans.c.id).limit(limit)
        if self.for_update:
            stmt = stmt.with_for_update(skip_locked=True)
        return list(conn.execute(stmt).mappings())

    def advance_dir_scan(self, conn: Connection, scan_id: int, after: int | None) -> None:
        """Record a scan's progress (None: done, the row goes)."""
        c = trans_dir_scans.c
        if after is None:
            conn.execute(delete(trans_dir_scans).where(c.id == scan_id))
        else:
            conn.execute(update(trans_dir_scans).where(c.id == scan_id).values(after_file=after))

    # --- helpers ------------------------------------------------------------------------
    def _read(self, conn: Connection, table: Any, key: Any, ids: Sequence[int]) -> Rows:
        out: Rows = {}
        for chunk in _chunks(sorted(set(ids))):
            stmt = select(table).where(key.in_(chunk)).order_by(key)
            if self.for_update:
                stmt = stmt.with_for_update()
            out.update({int(r[key.name]): r for r in conn.execute(stmt).mappings()})
        return out


def _chunks(seq: Sequence[int], size: int = IN_CHUNK) -> Iterator[list[int]]:
    for i in range(0, len(seq), size):
        yield list(seq[i : i + size])
