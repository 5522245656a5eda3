"""File catalog use cases: register, replicas, remove, look up, list, ancestry.

Permissions: every valid token may read. Writing into a directory needs a user or job token
whose user owns the directory, whose group is the directory's group, or which holds
ProductionManagement (or Admin). The root ``/`` is open: any user may create top-level
directories, which then belong to them and their group. A new directory belongs to the
identity that creates it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from ctaprod.core.catalog import (
    DirEntry,
    DirInfo,
    DirPage,
    FileInfo,
    FileRegistration,
    Relative,
    ReplicaRef,
    check_adler32,
)
from ctaprod.core.errors import Conflict, Forbidden, InvalidInput, NotFound, TooLarge
from ctaprod.core.identity import Identity
from ctaprod.core.lfn import ROOT, check_lfn
from ctaprod.core.metaquery import FieldType, MetaSchema, Scalar, check_field_name, coerce
from ctaprod.core.properties import Property, TokenKind
from ctaprod.db.catalog import DirRow, FileRow, ListEntry
from ctaprod.logic import metadata as meta_logic
from ctaprod.logic.context import Context

WRITE_PROPERTIES = (Property.PRODUCTION_MANAGEMENT, Property.ADMIN)
LIST_PAGE = 5_000  # largest page of listdir_page
STREAM_PAGE = 10_000  # keyset page of a streamed listing
MAX_DEPTH = 100
_RETRIES = 3  # transactions lost to a concurrent creation of the same directory or file
_SHOWN = 10  # LFNs named in one error message


# --- helpers ---------------------------------------------------------------------------------
def _split(lfn: str) -> tuple[str, str]:
    """(directory, name) of a checked LFN."""
    head, _, name = lfn.rpartition("/")
    return head or ROOT, name


def _dir_chain(directory: str) -> list[str]:
    """``directory`` and all its ancestors, root first."""
    if directory == ROOT:
        return [ROOT]
    parts = directory.split("/")
    return [ROOT] + ["/".join(parts[: i + 1]) for i in range(1, len(parts))]


def _names(items: Iterable[str]) -> str:
    items = sorted(set(items))
    text = ", ".join(items[:_SHOWN])
    return text + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def _require_writer(ident: Identity) -> None:
    if ident.kind is TokenKind.PILOT:
        raise Forbidden("a pilot token cannot change the file catalog")


def _check_batch(ctx: Context, n: int, what: str = "LFNs") -> None:
    limit = ctx.settings.data.max_lfns_per_call
    if n > limit:
        raise TooLarge(f"{n} {what} in one call; the limit is {limit}")


def _may_write(ident: Identity, directory: DirRow) -> bool:
    return (
        directory.path == ROOT
        or ident.has(*WRITE_PROPERTIES)
        or ident.user == directory.owner
        or ident.group == directory.owner_group
    )


def _nearest(directory: str, known: dict[str, DirRow]) -> DirRow | None:
    for path in reversed(_dir_chain(directory)):
        if path in known:
            return known[path]
    return None


def _check_dirs_writable(ident: Identity, dirs: Iterable[str], known: dict[str, DirRow]) -> None:
    """Forbidden unless ``ident`` may write into each directory (or its nearest ancestor)."""
    for directory in sorted(set(dirs)):
        near = _nearest(directory, known)
        if near is not None and not _may_write(ident, near):
            raise Forbidden(
                f"{ident.user}/{ident.group} may not write into {near.path} (owner "
                f"{near.owner}, group {near.owner_group}), needed for {directory}",
                path=near.path,
            )


def _check_ses(ctx: Context, ses: Iterable[str]) -> None:
    for se in sorted(set(ses)):
        try:
            ctx.settings.storage_element(se)
        except KeyError:
            raise NotFound(f"unknown storage element {se!r}", se=se) from None


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
    )


def _resolve(
    ctx: Context, conn: Connection, lfns: Iterable[str]
) -> tuple[dict[str, FileRow], dict[str, DirRow]]:
    """The existing files among ``lfns`` and the directories holding them."""
    split = {lfn: _split(lfn) for lfn in lfns}
    dirs = ctx.catalog.dirs_by_path(conn, {dn for dn, _ in split.values()})
    keys = {lfn: (dirs[dn].dir_id, name) for lfn, (dn, name) in split.items() if dn in dirs}
    rows = ctx.catalog.files_by_name(conn, keys.values())
    return {lfn: rows[k] for lfn, k in keys.items() if k in rows}, dirs


def _ensure_dirs(
    ctx: Context, conn: Connection, ident: Identity, targets: set[str], lookup: Iterable[str] = ()
) -> dict[str, DirRow]:
    """Check write access to ``targets`` and create the missing ones (``mkdir -p``).

    Returns the known directories (targets, their ancestors and those of ``lookup`` that
    exist): a name that is a file cannot become a directory (Conflict).
    """
    chain = {p for t in targets for p in _dir_chain(t)}
    known = ctx.catalog.dirs_by_path(conn, chain | set(lookup))
    _check_dirs_writable(ident, targets, known)
    missing = sorted(chain - known.keys())
    if not missing:
        return known
    keys = {
        (known[_split(p)[0]].dir_id, _split(p)[1]): p
        for p in missing
        if p != ROOT and _split(p)[0] in known
    }
    clash = ctx.catalog.files_by_name(conn, keys)
    if clash:
        raise Conflict(f"cannot create directory {_names(keys[k] for k in clash)}: it is a file")
    created = ctx.catalog.create_dirs(conn, missing, known, ident.user, ident.group, ctx.clock())
    pairs = [(c.dir_id, c.parent_id) for c in created if c.parent_id is not None]
    if pairs:
        ctx.meta.inherit_dirs(conn, pairs)
    return known


def _retrying(attempt_body: Any) -> Any:
    """Run a write transaction body again when a concurrent writer created the same row."""
    for attempt in range(_RETRIES):
        try:
            return attempt_body()
        except IntegrityError:
            if attempt == _RETRIES - 1:
                raise Conflict("the catalog changed concurrently too often; retry") from None
    raise AssertionError("unreachable")


def _verify(ctx: Context, items: Sequence[tuple[str, str, int, str]]) -> None:
    """Each (lfn, se, size, checksum) must match the file on the SE (SE path = LFN)."""
    for lfn, se, size, checksum in items:
        storage = ctx.storage(se)
        try:
            actual_size = storage.size(lfn)
            actual_sum = check_adler32(storage.checksum(lfn)) if actual_size == size else ""
        except NotFound:
            raise InvalidInput(f"{lfn} is not on {se}", lfn=lfn, se=se) from None
        if actual_size != size:
            raise InvalidInput(
                f"{lfn}: size on {se} is {actual_size}, the registration says {size}",
                lfn=lfn,
                se=se,
            )
        if actual_sum != checksum:
            raise InvalidInput(
                f"{lfn}: ADLER32 on {se} is {actual_sum}, the registration says {checksum}",
                lfn=lfn,
                se=se,
            )


def _unregistered(
    ctx: Context, items: Sequence[tuple[str, str, int, str]]
) -> list[tuple[str, str, int, str]]:
    """The (lfn, se, size, checksum) whose replica is not in the catalog yet."""
    with ctx.db.read() as conn:
        files, _ = _resolve(ctx, conn, {i[0] for i in items})
        reps = ctx.catalog.replicas(conn, [row.file_id for row in files.values()])
    return [i for i in items if i[0] not in files or i[1] not in reps.get(files[i[0]].file_id, [])]


# --- registration ----------------------------------------------------------------------------
def register_files(
    ctx: Context, ident: Identity, regs: Sequence[FileRegistration], *, verify: bool | None = None
) -> list[int]:
    """Register files (with first replica, metadata, ancestry, events) in one transaction.

    Returns the file ids in input order. The same file again (same size and checksum) only
    adds its replica; any error leaves the catalog unchanged.
    """
    _require_writer(ident)
    _check_batch(ctx, len(regs))
    if not regs:
        return []
    unique: dict[str, FileRegistration] = {}
    for reg in regs:
        prev = unique.setdefault(reg.lfn, reg)
        if (prev.size, prev.checksum) != (reg.size, reg.checksum):
            raise InvalidInput(f"{reg.lfn} is twice in the batch with different size or checksum")
        if reg.lfn in reg.parents:
            raise InvalidInput(f"{reg.lfn} cannot be its own parent")
    _check_ses(ctx, (r.se for r in regs if r.se))
    if ctx.settings.data.verify_registration if verify is None else verify:
        items = sorted({(r.lfn, r.se, r.size, r.checksum) for r in regs if r.se})
        _verify(ctx, _unregistered(ctx, items))

    def body() -> list[int]:
        with ctx.db.write() as conn:
            return _register(ctx, conn, ident, regs, unique)

    result: list[int] = _retrying(body)
    return result


def _register(
    ctx: Context,
    conn: Connection,
    ident: Identity,
    regs: Sequence[FileRegistration],
    unique: dict[str, FileRegistration],
) -> list[int]:
    now = ctx.clock()
    split = {lfn: _split(lfn) for lfn in unique}
    known = _ensure_dirs(ctx, conn, ident, {dn for dn, _ in split.values()}, unique)
    taken = [lfn for lfn in unique if lfn in known]
    if taken:
        raise Conflict(f"already a directory: {_names(taken)}")
    key = {lfn: (known[dn].dir_id, name) for lfn, (dn, name) in split.items()}
    existing = ctx.catalog.files_by_name(conn, key.values())
    file_ids: dict[str, int] = {}
    for lfn, reg in unique.items():
        row = existing.get(key[lfn])
        if row is None:
            continue
        if (row.size, row.checksum) != (reg.size, reg.checksum):
            raise Conflict(
                f"{lfn} is already registered with size {row.size} and ADLER32 "
                f"{row.checksum} (this registration: {reg.size}, {reg.checksum})",
                lfn=lfn,
            )
        file_ids[lfn] = row.file_id
    new = [lfn for lfn in unique if lfn not in file_ids]
    parents = _parent_ids(ctx, conn, unique, set(new))
    values = _checked_metadata(ctx, conn, [unique[lfn] for lfn in new])
    rows = [
        {
            "dir_id": key[lfn][0],
            "name": key[lfn][1],
            "size": unique[lfn].size,
            "checksum": unique[lfn].checksum,
            "guid": unique[lfn].guid or str(uuid.uuid4()),
            "owner": ident.user,
            "owner_group": ident.group,
            "created": now,
        }
        for lfn in new
    ]
    file_ids.update(zip(new, ctx.catalog.insert_files(conn, rows), strict=True))
    have = ctx.catalog.replicas(conn, [file_ids[lfn] for lfn in unique if lfn not in new])
    pairs = {
        (file_ids[r.lfn], r.se) for r in regs if r.se and r.se not in have.get(file_ids[r.lfn], ())
    }
    ctx.catalog.add_replicas(conn, sorted(pairs), now)
    ctx.catalog.add_ancestry(
        conn,
        [
            (file_ids[lfn], file_ids.get(p) or parents[p])
            for lfn in new
            for p in unique[lfn].parents
        ],
    )
    if values is not None:
        types, checked = values
        ctx.meta.add_file_values(
            conn,
            [(file_ids[lfn], v) for lfn, v in checked],
            types,
            dir_ids={file_ids[lfn]: key[lfn][0] for lfn, _ in checked},
        )
    ctx.catalog.add_events(conn, "file", [(file_ids[lfn], key[lfn][0]) for lfn in new], now)
    return [file_ids[r.lfn] for r in regs]


def _parent_ids(
    ctx: Context, conn: Connection, unique: dict[str, FileRegistration], new: set[str]
) -> dict[str, int]:
    """Ids of the ancestor LFNs of new files that are not in the batch; all must exist."""
    wanted = {p for lfn in new for p in unique[lfn].parents if p not in unique}
    if not wanted:
        return {}
    found, _ = _resolve(ctx, conn, wanted)
    missing = wanted - found.keys()
    if missing:
        raise InvalidInput(
            f"parent files not in the catalog: {_names(missing)}", missing=sorted(missing)
        )
    return {lfn: row.file_id for lfn, row in found.items()}


def _checked_metadata(
    ctx: Context, conn: Connection, regs: Sequence[FileRegistration]
) -> tuple[dict[str, FieldType], list[tuple[str, dict[str, Scalar]]]] | None:
    """(field types, [(lfn, coerced values)]) of the registrations carrying metadata.

    The first file goes through ``logic.metadata.check_values``; the others are coerced
    with the same core rules against the field types read once (``check_values`` reads
    them per call: one query per file would cost most of a bulk registration).
    """
    with_meta = [r for r in regs if r.metadata]
    if not with_meta:
        return None
    types = ctx.meta.field_types(conn)
    schema = MetaSchema(types)
    checked: list[tuple[str, dict[str, Scalar]]] = []
    for reg in with_meta:
        try:
            if not checked:
                values = meta_logic.check_values(ctx, conn, reg.metadata)
            else:
                values = {
                    name: coerce(name, schema.field_type(check_field_name(name)), value)
                    for name, value in reg.metadata.items()
                }
        except InvalidInput as exc:
            raise InvalidInput(
                f"{reg.lfn}: {exc.message}", **{**exc.detail, "lfn": reg.lfn}
            ) from None
        checked.append((reg.lfn, values))
    return types, checked


def check_write(ctx: Context, conn: Connection, ident: Identity, lfn: str) -> None:
    """Raise Forbidden unless ``ident`` may create ``lfn`` (nearest existing directory)."""
    _require_writer(ident)
    directory = _split(check_lfn(lfn))[0]
    _check_dirs_writable(ident, [directory], ctx.catalog.dirs_by_path(conn, _dir_chain(directory)))


# --- replicas and removal --------------------------------------------------------------------
def add_replicas(
    ctx: Context, ident: Identity, refs: Sequence[ReplicaRef], *, verify: bool | None = None
) -> int:
    """Add replica entries of catalogued files; returns how many were new."""
    _require_writer(ident)
    _check_batch(ctx, len(refs), "replicas")
    _check_ses(ctx, (r.se for r in refs))
    if ctx.settings.data.verify_registration if verify is None else verify:
        with ctx.db.read() as conn:
            files, _ = _resolve(ctx, conn, {r.lfn for r in refs})
        _missing(refs, files)
        items = sorted({(r.lfn, r.se, files[r.lfn].size, files[r.lfn].checksum) for r in refs})
        _verify(ctx, _unregistered(ctx, items))

    def body() -> int:
        with ctx.db.write() as conn:
            files = _writable_files(ctx, conn, ident, {r.lfn for r in refs})
            _missing(refs, files)
            have = ctx.catalog.replicas(conn, [row.file_id for row in files.values()])
            pairs = {
                (files[r.lfn].file_id, r.se)
                for r in refs
                if r.se not in have.get(files[r.lfn].file_id, ())
            }
            return ctx.catalog.add_replicas(conn, sorted(pairs), ctx.clock())

    count: int = _retrying(body)
    return count


def _missing(refs: Sequence[ReplicaRef], files: dict[str, FileRow]) -> None:
    missing = {r.lfn for r in refs} - files.keys()
    if missing:
        raise NotFound(f"not in the catalog: {_names(missing)}", missing=sorted(missing))


def _writable_files(
    ctx: Context, conn: Connection, ident: Identity, lfns: set[str]
) -> dict[str, FileRow]:
    """The existing files among ``lfns``; Forbidden unless ``ident`` may write their dirs."""
    files, dirs = _resolve(ctx, conn, lfns)
    by_id = {row.dir_id: row for row in dirs.values()}
    for lfn, row in files.items():
        if not _may_write(ident, by_id[row.dir_id]):
            directory = by_id[row.dir_id]
            raise Forbidden(
                f"{ident.user}/{ident.group} may not change {lfn} (directory owner "
                f"{directory.owner}, group {directory.owner_group})",
                lfn=lfn,
            )
    return files


def remove_replica_entries(ctx: Context, ident: Identity, refs: Sequence[ReplicaRef]) -> int:
    """Remove replica entries (catalog only); unknown ones are skipped. Returns how many."""
    _require_writer(ident)
    _check_batch(ctx, len(refs), "replicas")
    with ctx.db.write() as conn:
        files = _writable_files(ctx, conn, ident, {r.lfn for r in refs})
        pairs = [(files[r.lfn].file_id, r.se) for r in refs if r.lfn in files]
        return ctx.catalog.remove_replicas(conn, pairs)


def remove_file_entries(ctx: Context, ident: Identity, lfns: Sequence[str]) -> int:
    """Remove files with their replica entries, ancestry and metadata (catalog only).

    Unknown LFNs are skipped; returns how many files were removed.
    """
    _require_writer(ident)
    _check_batch(ctx, len(lfns))
    wanted = {check_lfn(lfn) for lfn in lfns}
    with ctx.db.write() as conn:
        files = _writable_files(ctx, conn, ident, wanted)
        ids = sorted(row.file_id for row in files.values())
        if not ids:
            return 0
        ctx.meta.delete_files(conn, ids)
        count = ctx.catalog.delete_files(conn, ids)
        events = [(row.file_id, row.dir_id) for row in files.values()]
        ctx.catalog.add_events(conn, "remove", events, ctx.clock())
        return count


# --- reading ---------------------------------------------------------------------------------
def get_files(ctx: Context, lfns: Sequence[str]) -> dict[str, FileInfo]:
    """Catalog entries (with replicas) of the LFNs that exist; missing ones are absent."""
    _check_batch(ctx, len(lfns))
    wanted = {check_lfn(lfn) for lfn in lfns}
    with ctx.db.read() as conn:
        files, _ = _resolve(ctx, conn, wanted)
        reps = ctx.catalog.replicas(conn, [row.file_id for row in files.values()])
    return {lfn: _file_info(lfn, row, reps.get(row.file_id, [])) for lfn, row in files.items()}


def mkdir(ctx: Context, ident: Identity, path: str) -> DirInfo:
    """Create a directory and its missing parents (existing ones are fine)."""
    _require_writer(ident)
    path = check_lfn(path)

    def body() -> DirInfo:
        with ctx.db.write() as conn:
            if path != ROOT:
                directory, name = _split(path)
                parent = ctx.catalog.dirs_by_path(conn, [directory]).get(directory)
                if parent and ctx.catalog.files_by_name(conn, [(parent.dir_id, name)]):
                    raise Conflict(f"{path} is a file", lfn=path)
            known = _ensure_dirs(ctx, conn, ident, {path})
            return _dir_info(ctx, conn, known[path])

    info: DirInfo = _retrying(body)
    return info


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
    del ident  # every valid token may read
    path = check_lfn(path)
    with ctx.db.read() as conn:
        row = ctx.catalog.dirs_by_path(conn, [path]).get(path)
        if row is not None:
            return _dir_info(ctx, conn, row)
        if path != ROOT:
            files, _ = _resolve(ctx, conn, [path])
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
        files, _ = _resolve(ctx, conn, [path])
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
    del ident  # every valid token may read
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
    return _relatives(ctx, lfn, depth, up=True)


def descendants(ctx: Context, ident: Identity, lfn: str, depth: int = 1) -> list[Relative]:
    """The files made from ``lfn``, up to ``depth`` generations (1: its children)."""
    return _relatives(ctx, lfn, depth, up=False)


def _relatives(ctx: Context, lfn: str, depth: int, *, up: bool) -> list[Relative]:
    if not 1 <= depth <= MAX_DEPTH:
        raise InvalidInput(f"depth must be between 1 and {MAX_DEPTH}, not {depth}")
    lfn = check_lfn(lfn)
    limit = ctx.settings.data.max_lfns_per_call
    with ctx.db.read() as conn:
        files, _ = _resolve(ctx, conn, [lfn])
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
