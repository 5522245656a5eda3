"""File catalog: directories, files, replicas, ancestry (bulk-first; events: ``db/events.py``).

Directories are looked up by ``path_hash`` (SHA-1 of the path), files by ``(dir_id, name)``.
Every method works on a batch and issues one statement per batch (or per directory for
file lookups); none commits.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    String,
    bindparam,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from ctaprod.db.tables import (
    catalog_ancestry,
    catalog_dirs,
    catalog_files,
    catalog_replicas,
)

ROOT = "/"
# Values per IN list, within every engine's bind-parameter limit.
IN_CHUNK = 900 if sqlite3.sqlite_version_info < (3, 32, 0) else 5_000

d, f, r, a = catalog_dirs.c, catalog_files.c, catalog_replicas.c, catalog_ancestry.c

_DIR_COLS = (d.dir_id, d.parent_id, d.path, d.owner, d.owner_group, d.created)
_DIRS_BY_HASH = select(*_DIR_COLS).where(d.path_hash.in_(bindparam("hashes", expanding=True)))
_FILE_COLS = (
    f.file_id,
    f.dir_id,
    f.name,
    f.size,
    f.checksum,
    f.guid,
    f.owner,
    f.owner_group,
    f.status,
    f.created,
    f.job_id,
    f.attempt,
)
_FILES_IN_DIR = select(*_FILE_COLS).where(
    f.dir_id == bindparam("dir_id"), f.name.in_(bindparam("names", expanding=True))
)
_REPLICAS = select(r.file_id, r.se).where(r.file_id.in_(bindparam("ids", expanding=True)))
_LFNS = (
    select(f.file_id, d.path, f.name)
    .join(catalog_dirs, d.dir_id == f.dir_id)
    .where(f.file_id.in_(bindparam("ids", expanding=True)))
)


def path_hash(path: str) -> str:
    """The lookup key of a directory path."""
    return hashlib.sha1(path.encode()).hexdigest()


def join_path(directory: str, name: str) -> str:
    return directory + name if directory == ROOT else f"{directory}/{name}"


class ListEntry(NamedTuple):
    """One line of a listing; ``created`` as ISO 8601 UTC text (listings are streamed as
    they are read, so rows skip the datetime round trip). A plain listing (``long=False``)
    has the kind and the name only."""

    kind: str
    name: str
    owner: str | None = None
    owner_group: str | None = None
    created: str | None = None
    size: int | None = None
    checksum: str | None = None
    status: str | None = None


def _long_entries(kind: str, rows: Sequence[tuple[Any, ...]]) -> list[ListEntry]:
    # Rows (name, owner, group, created as text, [size, checksum, status]): the time is read
    # as text on every engine (decoding 100,000 DATETIMEs is most of a listing's cost with
    # pymysql) and formatted once per distinct value: files registered together share it.
    iso: dict[Any, str] = {}
    out = []
    for row in rows:
        raw = row[3]
        text = iso.get(raw)
        if text is None:
            text = iso[raw] = datetime.fromisoformat(raw).replace(tzinfo=UTC).isoformat()
        out.append(ListEntry(kind, row[0], row[1], row[2], text, *row[4:]))
    return out


def _created_text(column: Any) -> Any:
    return cast(column, String)


@dataclass(frozen=True)
class DirRow:
    dir_id: int
    parent_id: int | None
    path: str
    owner: str
    owner_group: str
    created: datetime


@dataclass(frozen=True)
class FileRow:
    file_id: int
    dir_id: int
    name: str
    size: int
    checksum: str
    guid: str
    owner: str
    owner_group: str
    status: str
    created: datetime
    job_id: int | None = None  # the job attempt that wrote the file (None: not a job)
    attempt: int | None = None


class CatalogDB:
    """Directory tree, files, replicas and ancestry. Methods never commit."""

    # --- directories ----------------------------------------------------------------------
    def dirs_by_path(self, conn: Connection, paths: Iterable[str]) -> dict[str, DirRow]:
        """The existing directories among ``paths``, by path."""
        hashes = sorted({path_hash(p) for p in paths})
        out: dict[str, DirRow] = {}
        for chunk in _chunks(hashes, IN_CHUNK):
            for row in conn.execute(_DIRS_BY_HASH, {"hashes": chunk}):
                out[row.path] = DirRow(*row)
        return out

    def create_dirs(
        self,
        conn: Connection,
        paths: Iterable[str],
        known: dict[str, DirRow],
        owner: str,
        group: str,
        now: datetime,
    ) -> list[DirRow]:
        """Create the directories ``paths`` not in ``known`` (parents first, one INSERT per
        depth); every parent must be in ``known`` or in ``paths``. Adds the new rows to
        ``known`` and returns them (a concurrent creation raises IntegrityError)."""
        by_depth: dict[int, list[str]] = defaultdict(list)
        for p in set(paths) - known.keys():
            by_depth[0 if p == ROOT else p.count("/")].append(p)
        created: list[DirRow] = []
        for depth in sorted(by_depth):
            level = sorted(by_depth[depth])
            rows: list[dict[str, Any]] = []
            for p in level:
                parent, _, name = p.rpartition("/")
                parent_id = None if p == ROOT else known[parent or ROOT].dir_id
                rows.append(
                    {
                        "parent_id": parent_id,
                        "name": name,
                        "path": p,
                        "path_hash": path_hash(p),
                        "owner": owner,
                        "owner_group": group,
                        "created": now,
                    }
                )
            result = conn.execute(
                insert(catalog_dirs).returning(d.dir_id, sort_by_parameter_order=True), rows
            )
            for row, (dir_id,) in zip(rows, result, strict=True):
                new = DirRow(dir_id, row["parent_id"], row["path"], owner, group, now)
                known[new.path] = new
                created.append(new)
        return created

    def set_dir_owner(
        self, conn: Connection, dir_ids: Iterable[int], owner: str, group: str
    ) -> int:
        """Give directories a new owner and group; returns how many rows changed."""
        ids = sorted(set(dir_ids))
        if not ids:
            return 0
        return int(
            conn.execute(
                update(catalog_dirs).where(d.dir_id.in_(ids)).values(owner=owner, owner_group=group)
            ).rowcount
        )

    def counts(self, conn: Connection, dir_id: int) -> tuple[int, int]:
        """(files, subdirectories) directly in a directory."""
        files = conn.execute(
            select(func.count()).select_from(catalog_files).where(f.dir_id == dir_id)
        ).scalar_one()
        subdirs = conn.execute(
            select(func.count()).select_from(catalog_dirs).where(d.parent_id == dir_id)
        ).scalar_one()
        return int(files), int(subdirs)

    def subdirs_page(
        self, conn: Connection, dir_id: int, after: str | None, limit: int, *, long: bool = True
    ) -> list[ListEntry]:
        """Subdirectories of ``dir_id`` by name, after ``after`` (keyset), at most ``limit``;
        names only unless ``long``."""
        cols = (d.name, d.owner, d.owner_group, _created_text(d.created)) if long else (d.name,)
        stmt = select(*cols).where(d.parent_id == dir_id)
        if after is not None:
            stmt = stmt.where(d.name > after)
        rows = conn.execute(stmt.order_by(d.name).limit(limit)).all()
        if long:
            return _long_entries("dir", rows)
        return [ListEntry("dir", name) for (name,) in rows]

    def files_page(
        self, conn: Connection, dir_id: int, after: str | None, limit: int, *, long: bool = True
    ) -> list[ListEntry]:
        """Files of ``dir_id`` by name, after ``after`` (keyset), at most ``limit``; names
        only unless ``long``."""
        cols = (
            (f.name, f.owner, f.owner_group, _created_text(f.created), f.size, f.checksum, f.status)
            if long
            else (f.name,)
        )
        stmt = select(*cols).where(f.dir_id == dir_id)
        if after is not None:
            stmt = stmt.where(f.name > after)
        rows = conn.execute(stmt.order_by(f.name).limit(limit)).all()
        if long:
            return _long_entries("file", rows)
        return [ListEntry("file", name) for (name,) in rows]

    def subdir_ids_page(
        self, conn: Connection, dir_id: int, after: str | None, limit: int
    ) -> list[tuple[str, int]]:
        """``(name, dir_id)`` of the subdirectories of ``dir_id`` by name, after ``after``
        (keyset), at most ``limit``."""
        stmt = select(d.name, d.dir_id).where(d.parent_id == dir_id)
        if after is not None:
            stmt = stmt.where(d.name > after)
        return [(n, i) for n, i in conn.execute(stmt.order_by(d.name).limit(limit))]

    def replica_files_page(
        self, conn: Connection, dir_id: int, se: str, after: str | None, limit: int
    ) -> list[tuple[str, int]]:
        """``(name, file_id)`` of the files of ``dir_id`` with a replica on ``se``, by name,
        after ``after`` (keyset), at most ``limit``."""
        stmt = (
            select(f.name, f.file_id)
            .join(catalog_replicas, r.file_id == f.file_id)
            .where(f.dir_id == dir_id, r.se == se)
        )
        if after is not None:
            stmt = stmt.where(f.name > after)
        return [(n, i) for n, i in conn.execute(stmt.order_by(f.name).limit(limit))]

    # --- files ----------------------------------------------------------------------------
    def files_by_name(
        self, conn: Connection, keys: Iterable[tuple[int, str]]
    ) -> dict[tuple[int, str], FileRow]:
        """The existing files among ``(dir_id, name)`` keys (one statement per directory)."""
        by_dir: dict[int, set[str]] = defaultdict(set)
        for dir_id, name in keys:
            by_dir[dir_id].add(name)
        out: dict[tuple[int, str], FileRow] = {}
        for dir_id, names in by_dir.items():
            for chunk in _chunks(sorted(names), IN_CHUNK):
                for row in conn.execute(_FILES_IN_DIR, {"dir_id": dir_id, "names": chunk}):
                    out[(row.dir_id, row.name)] = FileRow(**row._mapping)
        return out

    def insert_files(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Insert file rows; return their ids in input order."""
        if not rows:
            return []
        result = conn.execute(
            insert(catalog_files).returning(f.file_id, sort_by_parameter_order=True), list(rows)
        )
        return [row[0] for row in result]

    def files_of_jobs(self, conn: Connection, job_ids: Iterable[int]) -> dict[int, list[int]]:
        """The files each job registered (``catalog_files.job_id``), by job."""
        out: dict[int, list[int]] = defaultdict(list)
        for chunk in _chunks(sorted(set(job_ids)), IN_CHUNK):
            stmt = select(f.file_id, f.job_id).where(f.job_id.in_(chunk))
            for file_id, job_id in conn.execute(stmt):
                out[int(job_id)].append(int(file_id))
        return dict(out)

    def lfns(self, conn: Connection, file_ids: Iterable[int]) -> dict[int, str]:
        """The LFN of each existing file among ``file_ids``."""
        out: dict[int, str] = {}
        for chunk in _chunks(sorted(set(file_ids)), IN_CHUNK):
            for file_id, directory, name in conn.execute(_LFNS, {"ids": chunk}):
                out[file_id] = join_path(directory, name)
        return out

    def delete_files(self, conn: Connection, file_ids: Sequence[int]) -> int:
        """Delete files with their replicas and ancestry rows (both directions)."""
        removed = 0
        for chunk in _chunks(sorted(set(file_ids)), IN_CHUNK):
            conn.execute(delete(catalog_replicas).where(r.file_id.in_(chunk)))
            conn.execute(
                delete(catalog_ancestry).where(or_(a.child_id.in_(chunk), a.parent_id.in_(chunk)))
            )
            removed += conn.execute(delete(catalog_files).where(f.file_id.in_(chunk))).rowcount
        return removed

    # --- replicas -------------------------------------------------------------------------
    def replicas(self, conn: Connection, file_ids: Iterable[int]) -> dict[int, list[str]]:
        """SE names of the replicas of each file (sorted); files without any are absent."""
        out: dict[int, list[str]] = defaultdict(list)
        for chunk in _chunks(sorted(set(file_ids)), IN_CHUNK):
            for file_id, se in conn.execute(_REPLICAS, {"ids": chunk}):
                out[file_id].append(se)
        for ses in out.values():
            ses.sort()
        return dict(out)

    def add_replicas(
        self, conn: Connection, pairs: Iterable[tuple[int, str]], now: datetime
    ) -> int:
        """Insert replica rows ``(file_id, se)`` (the caller left out existing ones)."""
        rows = [{"file_id": i, "se": se, "created": now} for i, se in pairs]
        if rows:
            conn.execute(insert(catalog_replicas), rows)
        return len(rows)

    def remove_replicas(self, conn: Connection, pairs: Iterable[tuple[int, str]]) -> int:
        """Delete replica rows ``(file_id, se)``; returns how many existed."""
        by_se: dict[str, list[int]] = defaultdict(list)
        for file_id, se in pairs:
            by_se[se].append(file_id)
        removed = 0
        for se, ids in by_se.items():
            for chunk in _chunks(sorted(set(ids)), IN_CHUNK):
                stmt = delete(catalog_replicas).where(r.se == se, r.file_id.in_(chunk))
                removed += conn.execute(stmt).rowcount
        return removed

    # --- ancestry -----------------------------------------------------------------------
    def add_ancestry(self, conn: Connection, pairs: Iterable[tuple[int, int]]) -> None:
        """Insert ``(child_id, parent_id)`` rows (new ones only)."""
        rows = [{"child_id": c, "parent_id": p} for c, p in sorted(set(pairs))]
        if rows:
            conn.execute(insert(catalog_ancestry), rows)

    def related(self, conn: Connection, file_ids: Iterable[int], *, up: bool) -> list[int]:
        """Parents (``up``) or children of ``file_ids``: one generation, without repeats."""
        mine, other = (a.child_id, a.parent_id) if up else (a.parent_id, a.child_id)
        out: set[int] = set()
        for chunk in _chunks(sorted(set(file_ids)), IN_CHUNK):
            out.update(v for (v,) in conn.execute(select(other).where(mine.in_(chunk))))
        return sorted(out)


def _chunks(seq: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(seq), size):
        yield list(seq[i : i + size])
