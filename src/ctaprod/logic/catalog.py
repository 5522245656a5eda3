"""File catalog use cases: look up, list, make directories, ancestry, remove entries.

Registration (new files and new replicas) lives in :mod:`ctaprod.logic.registration`, the
namespace rules (permissions, directory creation) in :mod:`ctaprod.logic.catalog_access`;
their public names are re-exported here, so that callers use one module for the catalog.
Every user and job token may read (the catalog is world-readable, as DIRAC's default
mode); pilot tokens may not; writing follows the rules of :mod:`ctaprod.logic.catalog_access`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import Connection

from ctaprod.core.catalog import DirEntry, DirInfo, DirPage, FileInfo, Relative, ReplicaRef
from ctaprod.core.errors import Conflict, InvalidInput, NotFound, TooLarge
from ctaprod.core.events import EventKind, NewEvent
from ctaprod.core.identity import Identity
from ctaprod.core.lfn import ROOT, check_lfn
from ctaprod.db.catalog import DirRow, FileRow
from ctaprod.db.catalog import ListEntry as ListEntry  # what listings yield (routers use it)
from ctaprod.logic.authz import refuse_pilot
from ctaprod.logic.catalog_access import (
    WRITE_PROPERTIES,
    check_batch,
    check_write,
    ensure_dirs,
    require_writer,
    resolve,
    retrying,
    split_lfn,
    writable_files,
)
from ctaprod.logic.context import Context
from ctaprod.logic.registration import add_replicas, register_files

__all__ = [
    "LIST_PAGE",
    "MAX_DEPTH",
    "STREAM_PAGE",
    "WRITE_PROPERTIES",
    "add_replicas",
    "ancestors",
    "check_write",
    "descendants",
    "get_files",
    "listdir",
    "listdir_page",
    "listdir_pages",
    "mkdir",
    "register_files",
    "remove_file_entries",
    "remove_replica_entries",
    "stat",
]

LIST_PAGE = 5_000  # largest page of listdir_page
STREAM_PAGE = 10_000  # keyset page of a streamed listing
MAX_DEPTH = 100


def _file_info(lfn: str, row: FileRow, replicas: list[str]) -> FileInfo:
    return FileInfo(
        lfn=lfn,
        size=row.size,
        checksum=row.checksum,
        guid=row.guid,
        owner=row.owner,
        owner_group=row.owner_group,
        status=row.status,
        created=row.created,
        replicas=replicas,
        job_id=row.job_id,
        attempt=row.attempt,
    )


# --- removal -------------------------------------------------------------------------------
def remove_replica_entries(ctx: Context, ident: Identity, refs: Sequence[ReplicaRef]) -> int:
    """Remove replica entries (catalog only); unknown ones are skipped. Returns how many."""
    require_writer(ident)
    check_batch(ctx, len(refs), "replicas")
    with ctx.db.write() as conn:
        files = writable_files(ctx, conn, ident, {r.lfn for r in refs})
        pairs = {(files[r.lfn].file_id, r.se) for r in refs if r.lfn in files}
        # Events for the entries that exist (read in this write transaction).
        have = ctx.catalog.replicas(conn, {file_id for file_id, _ in pairs})
        dirs = {row.file_id: row.dir_id for row in files.values()}
        gone = sorted((fid, se) for fid, se in pairs if se in have.get(fid, ()))
        events = [NewEvent(EventKind.REPLICA_REMOVED, fid, dirs[fid], se=se) for fid, se in gone]
        ctx.events.add(conn, events, ctx.clock())
        return ctx.catalog.remove_replicas(conn, gone)


def remove_file_entries(ctx: Context, ident: Identity, lfns: Sequence[str]) -> int:
    """Remove files with their replica entries, ancestry and metadata (catalog only).

    Unknown LFNs are skipped; returns how many files were removed.
    """
    require_writer(ident)
    check_batch(ctx, len(lfns))
    wanted = {check_lfn(lfn) for lfn in lfns}
    with ctx.db.write() as conn:
        files = writable_files(ctx, conn, ident, wanted)
        ids = sorted(row.file_id for row in files.values())
        if not ids:
            return 0
        ctx.meta.delete_files(conn, ids)
        count = ctx.catalog.delete_files(conn, ids)
        events = [NewEvent(EventKind.FILE_REMOVED, r.file_id, r.dir_id) for r in files.values()]
        ctx.events.add(conn, events, ctx.clock())
        return count


# --- reading ---------------------------------------------------------------------------------
def get_files(
    ctx: Context, lfns: Sequence[str], conn: Connection | None = None
) -> dict[str, FileInfo]:
    """Catalog entries (with replicas) of the LFNs that exist; missing ones are absent.

    ``conn`` reads in the caller's transaction (e.g. rescheduling jobs), else in a new one."""
    check_batch(ctx, len(lfns))
    wanted = {check_lfn(lfn) for lfn in lfns}
    if conn is None:
        with ctx.db.read() as c:
            return get_files(ctx, lfns, c)
    files, _ = resolve(ctx, conn, wanted)
    reps = ctx.catalog.replicas(conn, [row.file_id for row in files.values()])
    return {lfn: _file_info(lfn, row, reps.get(row.file_id, [])) for lfn, row in files.items()}


def mkdir(ctx: Context, ident: Identity, path: str) -> DirInfo:
    """Create a directory and its missing parents (existing ones are fine)."""
    require_writer(ident)
    path = check_lfn(path)

    def body() -> DirInfo:
        with ctx.db.write() as conn:
            if path != ROOT:
                directory, name = split_lfn(path)
                parent = ctx.catalog.dirs_by_path(conn, [directory]).get(directory)
                if parent and ctx.catalog.files_by_name(conn, [(parent.dir_id, name)]):
                    raise Conflict(f"{path} is a file", lfn=path)
            known = ensure_dirs(ctx, conn, ident, {path})
            return _dir_info(ctx, conn, known[path])

    return retrying(body)


def _dir_info(ctx: Context, conn: Connection, row: DirRow) -> DirInfo:
    files, subdirs = ctx.catalog.counts(conn, row.dir_id)
    return DirInfo(
        path=row.path,
        owner=row.owner,
        owner_group=row.owner_group,
        created=row.created,
        files=files,
        subdirs=subdirs,
    )


def stat(ctx: Context, ident: Identity, path: str) -> FileInfo | DirInfo:
    """A file's entry, or a directory's with its counts; NotFound when neither."""
    refuse_pilot(ident, "read the file catalog")
    path = check_lfn(path)
    with ctx.db.read() as conn:
        row = ctx.catalog.dirs_by_path(conn, [path]).get(path)
        if row is not None:
            return _dir_info(ctx, conn, row)
        if path != ROOT:
            files, _ = resolve(ctx, conn, [path])
            if path in files:
                reps = ctx.catalog.replicas(conn, [files[path].file_id])
                return _file_info(path, files[path], reps.get(files[path].file_id, []))
    raise NotFound(f"no such file or directory: {path}", lfn=path)


def _open_dir(ctx: Context, path: str) -> DirRow | None:
    """The directory to list (None: the root, not created yet); errors before streaming."""
    path = check_lfn(path)
    with ctx.db.read() as conn:
        row = ctx.catalog.dirs_by_path(conn, [path]).get(path)
        if row is not None or path == ROOT:
            return row
        files, _ = resolve(ctx, conn, [path])
    if path in files:
        raise InvalidInput(f"{path} is a file, not a directory", lfn=path)
    raise NotFound(f"no such directory: {path}", lfn=path)


def listdir_pages(
    ctx: Context, ident: Identity, path: str, *, page: int = STREAM_PAGE, long: bool = True
) -> Iterator[list[ListEntry]]:
    """A directory's subdirectories then files, by name, in pages.

    ``long``: with owner, group, time (and size, checksum, status of files); otherwise the
    kind and the name only (what a plain ``ls`` shows, about 3 times cheaper to read).
    The directory is checked now (NotFound, InvalidInput); pages are read lazily, each in
    its own short transaction, so a listing of any size holds one page in memory.
    """
    refuse_pilot(ident, "read the file catalog")
    row = _open_dir(ctx, path)
    return _pages(ctx, row, page, long) if row is not None else iter(())


def _pages(ctx: Context, row: DirRow, page: int, long: bool) -> Iterator[list[ListEntry]]:
    for fetch in (ctx.catalog.subdirs_page, ctx.catalog.files_page):
        after: str | None = None
        while True:
            with ctx.db.read() as conn:
                rows = fetch(conn, row.dir_id, after, page, long=long)
            if rows:
                yield rows
            if len(rows) < page:
                break
            after = rows[-1].name


def listdir(ctx: Context, ident: Identity, path: str, *, long: bool = True) -> Iterator[ListEntry]:
    """The entries of :func:`listdir_pages`, one by one."""
    pages = listdir_pages(ctx, ident, path, long=long)
    return (entry for p in pages for entry in p)


def listdir_page(
    ctx: Context, ident: Identity, path: str, cursor: str | None = None, limit: int = 1000
) -> DirPage:
    """One page of a listing; the cursor is ``d:<name>`` or ``f:<name>`` (the last entry)."""
    refuse_pilot(ident, "read the file catalog")
    del ident
    if limit < 1 or limit > LIST_PAGE:
        raise InvalidInput(f"limit must be between 1 and {LIST_PAGE}")
    kind, after = "d", None
    if cursor:
        kind, sep, after = cursor.partition(":")
        if kind not in ("d", "f") or not sep:
            raise InvalidInput(f"invalid cursor {cursor!r}")
    row = _open_dir(ctx, path)
    entries: list[ListEntry] = []
    if row is not None:
        with ctx.db.read() as conn:
            if kind == "d":
                entries = ctx.catalog.subdirs_page(conn, row.dir_id, after, limit)
                after = None
            if len(entries) < limit:
                entries += ctx.catalog.files_page(conn, row.dir_id, after, limit - len(entries))
    next_cursor = None
    if len(entries) == limit:
        next_cursor = f"{entries[-1].kind[0]}:{entries[-1].name}"
    return DirPage(
        entries=[DirEntry.model_validate(e._asdict()) for e in entries], next_cursor=next_cursor
    )


# --- ancestry --------------------------------------------------------------------------------
def ancestors(ctx: Context, ident: Identity, lfn: str, depth: int = 1) -> list[Relative]:
    """The files ``lfn`` was made from, up to ``depth`` generations (1: its parents)."""
    refuse_pilot(ident, "read the file catalog")
    return _relatives(ctx, lfn, depth, up=True)


def descendants(ctx: Context, ident: Identity, lfn: str, depth: int = 1) -> list[Relative]:
    """The files made from ``lfn``, up to ``depth`` generations (1: its children)."""
    refuse_pilot(ident, "read the file catalog")
    return _relatives(ctx, lfn, depth, up=False)


def _relatives(ctx: Context, lfn: str, depth: int, *, up: bool) -> list[Relative]:
    if not 1 <= depth <= MAX_DEPTH:
        raise InvalidInput(f"depth must be between 1 and {MAX_DEPTH}, not {depth}")
    lfn = check_lfn(lfn)
    limit = ctx.settings.data.max_lfns_per_call
    with ctx.db.read() as conn:
        files, _ = resolve(ctx, conn, [lfn])
        if lfn not in files:
            raise NotFound(f"not in the catalog: {lfn}", lfn=lfn)
        seen = {files[lfn].file_id: 0}
        level = [files[lfn].file_id]
        for generation in range(1, depth + 1):
            level = [i for i in ctx.catalog.related(conn, level, up=up) if i not in seen]
            if not level:
                break
            seen.update(dict.fromkeys(level, generation))
            if len(seen) > limit + 1:
                raise TooLarge(f"{lfn} has more than {limit} relatives; ask for fewer generations")
        del seen[files[lfn].file_id]
        names = ctx.catalog.lfns(conn, seen)
    return sorted(
        (Relative(lfn=names[i], depth=g) for i, g in seen.items() if i in names),
        key=lambda rel: (rel.depth, rel.lfn),
    )
