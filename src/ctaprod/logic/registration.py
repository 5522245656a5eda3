"""Catalog registration: new files (with first replica, metadata, ancestry, events) and new
replicas of catalogued files.

Each call checks its batch, optionally verifies size and checksum on the storage elements
(outside any transaction), then writes in one transaction, run again when a concurrent
writer created the same directory or file. Any error leaves the catalog unchanged.
The public names are re-exported by :mod:`ctaprod.logic.catalog`.

Files registered with a job token belong to that job attempt (``job_id``, ``attempt``). A
later attempt of the same job (a rerun) replaces what an earlier one registered: the old
entry goes with its replicas, metadata and ancestry in the registering transaction, and its
bytes are removed afterwards where the new registration does not put a file at the same
path (ADR 0004). Anyone else registering the LFN with other content gets Conflict.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from ctaprod.core.catalog import FileRegistration, ReplicaRef, check_adler32
from ctaprod.core.errors import Conflict, CtaprodError, InvalidInput, NotFound
from ctaprod.core.events import EventKind, NewEvent
from ctaprod.core.identity import Identity
from ctaprod.core.metaquery import FieldType, Scalar
from ctaprod.core.properties import TokenKind
from ctaprod.core.storage import attempt_upload_path, se_path
from ctaprod.db.catalog import FileRow
from ctaprod.logic import metadata as meta_logic
from ctaprod.logic.catalog_access import (
    check_batch,
    check_dirs_writable,
    ensure_dirs,
    require_writer,
    resolve,
    retrying,
    shown_names,
    split_lfn,
    writable_files,
)
from ctaprod.logic.context import Context

log = logging.getLogger("ctaprod.registration")


@dataclass(frozen=True)
class _Replaced:
    """An entry a rerun replaced: where its bytes may still be."""

    lfn: str
    job_id: int
    attempt: int
    ses: tuple[str, ...]
    kept_se: frozenset[str]  # SEs where the new registration's file takes the same path


def register_files(
    ctx: Context,
    ident: Identity,
    regs: Sequence[FileRegistration],
    *,
    verify: bool | None = None,
    exclusive: bool = False,
) -> list[int]:
    """Register files (with first replica, metadata, ancestry, events) in one transaction.

    Returns the file ids in input order. The same file again (same size and checksum) only
    adds its replica, unless ``exclusive``: then any LFN already in the catalog is a
    Conflict (the caller must be the one who creates it). Any error leaves the catalog
    unchanged.
    """
    require_writer(ident)
    check_batch(ctx, len(regs))
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
        # Permission first: nobody may make the server read files it would not register.
        with ctx.db.read() as conn:
            check_dirs_writable(ctx, conn, ident, {split_lfn(lfn)[0] for lfn in unique})
        items = sorted({(r.lfn, r.se, r.size, r.checksum) for r in regs if r.se})
        _verify(ctx, _unregistered(ctx, items), _upload_of(ident))

    def body() -> tuple[list[int], list[_Replaced]]:
        with ctx.db.write() as conn:
            return _register(ctx, conn, ident, regs, unique, exclusive=exclusive)

    ids, replaced = retrying(body)
    _remove_replaced_bytes(ctx, replaced)
    return ids


def _remove_replaced_bytes(ctx: Context, replaced: Sequence[_Replaced]) -> None:
    """Best effort, after the commit: the bytes of entries a rerun replaced (their copies on
    SEs the new registration does not use, and the earlier attempt's temporary upload on the
    old and the new SEs, which a superseded wrapper can then no longer rename into place). A
    failure leaves an orphan that ``ctaprod dm check`` reports."""
    for old in replaced:
        for se in sorted({*old.ses, *old.kept_se}):
            paths = [attempt_upload_path(old.lfn, old.job_id, old.attempt)]
            if se in old.ses and se not in old.kept_se:
                paths.append(se_path(old.lfn))
            try:
                storage = ctx.storage(se)
            except CtaprodError as exc:
                log.warning("%s: replaced copy on %s left: %s", old.lfn, se, exc.message)
                continue
            for path in paths:
                try:
                    storage.remove(path)
                except NotFound:
                    pass
                except CtaprodError as exc:
                    log.warning(
                        "%s: replaced copy %s on %s left: %s", old.lfn, path, se, exc.message
                    )


def add_replicas(
    ctx: Context, ident: Identity, refs: Sequence[ReplicaRef], *, verify: bool | None = None
) -> int:
    """Add replica entries of catalogued files; returns how many were new."""
    require_writer(ident)
    check_batch(ctx, len(refs), "replicas")
    _check_ses(ctx, (r.se for r in refs))
    if ctx.settings.data.verify_registration if verify is None else verify:
        with ctx.db.read() as conn:
            files = writable_files(ctx, conn, ident, {r.lfn for r in refs})
        _missing(refs, files)
        items = sorted({(r.lfn, r.se, files[r.lfn].size, files[r.lfn].checksum) for r in refs})
        _verify(ctx, _unregistered(ctx, items))

    def body() -> int:
        with ctx.db.write() as conn:
            files = writable_files(ctx, conn, ident, {r.lfn for r in refs})
            _missing(refs, files)
            have = ctx.catalog.replicas(conn, [row.file_id for row in files.values()])
            pairs = {
                (files[r.lfn].file_id, r.se)
                for r in refs
                if r.se not in have.get(files[r.lfn].file_id, ())
            }
            now = ctx.clock()
            dirs = {row.file_id: row.dir_id for row in files.values()}
            ctx.events.add(conn, _replica_events(sorted(pairs), dirs), now)
            return ctx.catalog.add_replicas(conn, sorted(pairs), now)

    return retrying(body)


# --- checks before the transaction -----------------------------------------------------------
def _check_ses(ctx: Context, ses: Iterable[str]) -> None:
    for se in sorted(set(ses)):
        try:
            ctx.settings.storage_element(se)
        except KeyError:
            raise NotFound(f"unknown storage element {se!r}", se=se) from None


def _missing(refs: Sequence[ReplicaRef], files: dict[str, FileRow]) -> None:
    missing = {r.lfn for r in refs} - files.keys()
    if missing:
        raise NotFound(f"not in the catalog: {shown_names(missing)}", missing=sorted(missing))


def _upload_of(ident: Identity) -> Callable[[str], str] | None:
    """Where a job attempt's new files are while it registers them (None: at their LFN)."""
    job_id, attempt = ident.job_id, ident.attempt
    if ident.kind is not TokenKind.JOB or job_id is None or attempt is None:
        return None
    return lambda lfn: attempt_upload_path(lfn, job_id, attempt)


def _verify(
    ctx: Context,
    items: Sequence[tuple[str, str, int, str]],
    upload: Callable[[str], str] | None = None,
) -> None:
    """Each (lfn, se, size, checksum) must match the file on the SE: at the LFN's path, or
    at ``upload(lfn)`` (a job attempt's upload, renamed into place once registered)."""
    for lfn, se, size, checksum in items:
        storage = ctx.storage(se)
        path = upload(lfn) if upload is not None else lfn
        try:
            actual_size = storage.size(path)
            actual_sum = check_adler32(storage.checksum(path)) if actual_size == size else ""
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
        files, _ = resolve(ctx, conn, {i[0] for i in items})
        reps = ctx.catalog.replicas(conn, [row.file_id for row in files.values()])
    return [i for i in items if i[0] not in files or i[1] not in reps.get(files[i[0]].file_id, [])]


# --- the registering transaction -------------------------------------------------------------
def _register(
    ctx: Context,
    conn: Connection,
    ident: Identity,
    regs: Sequence[FileRegistration],
    unique: dict[str, FileRegistration],
    *,
    exclusive: bool = False,
) -> tuple[list[int], list[_Replaced]]:
    now = ctx.clock()
    split = {lfn: split_lfn(lfn) for lfn in unique}
    known = ensure_dirs(ctx, conn, ident, {dn for dn, _ in split.values()}, unique)
    taken = [lfn for lfn in unique if lfn in known]
    if taken:
        raise Conflict(f"already a directory: {shown_names(taken)}")
    key = {lfn: (known[dn].dir_id, name) for lfn, (dn, name) in split.items()}
    existing = ctx.catalog.files_by_name(conn, key.values())
    file_ids: dict[str, int] = {}
    stale: dict[str, FileRow] = {}
    for lfn, reg in unique.items():
        row = existing.get(key[lfn])
        if row is None:
            continue
        if exclusive:
            raise Conflict(f"{lfn} is already in the catalog: remove it first", lfn=lfn)
        if _earlier_attempt(ident, row):
            stale[lfn] = row
            continue
        if (row.size, row.checksum) != (reg.size, reg.checksum):
            writer = f" by job {row.job_id}" if row.job_id is not None else ""
            raise Conflict(
                f"{lfn} is already registered{writer} with size {row.size} and ADLER32 "
                f"{row.checksum} (this registration: {reg.size}, {reg.checksum})",
                lfn=lfn,
            )
        file_ids[lfn] = row.file_id
    replaced = _drop_replaced(ctx, conn, regs, stale, now)
    new = [lfn for lfn in unique if lfn not in file_ids]
    parents = _parent_ids(ctx, conn, unique, set(new))
    values = _checked_metadata(ctx, conn, [unique[lfn] for lfn in new])
    job_id, attempt = (ident.job_id, ident.attempt) if ident.kind is TokenKind.JOB else (None, None)
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
            "job_id": job_id,
            "attempt": attempt,
        }
        for lfn in new
    ]
    file_ids.update(zip(new, ctx.catalog.insert_files(conn, rows), strict=True))
    new_set = set(new)  # not ``lfn not in new``: a list scan per file, 4 ms per 1,000 files
    have = ctx.catalog.replicas(conn, [file_ids[lfn] for lfn in unique if lfn not in new_set])
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
    # A new file's first replica is part of its registration event; a new replica of a
    # file already there is an event of its own.
    events = [NewEvent(EventKind.FILE_REGISTERED, file_ids[lfn], key[lfn][0]) for lfn in new]
    if len(new) < len(unique):
        dirs = {file_ids[lfn]: key[lfn][0] for lfn in unique}
        new_ids = {file_ids[lfn] for lfn in new}
        events += _replica_events(sorted(p for p in pairs if p[0] not in new_ids), dirs)
    ctx.events.add(conn, events, now)
    return [file_ids[r.lfn] for r in regs], replaced


def _replica_events(pairs: Iterable[tuple[int, str]], dirs: dict[int, int]) -> list[NewEvent]:
    return [NewEvent(EventKind.REPLICA_ADDED, fid, dirs.get(fid), se=se) for fid, se in pairs]


def _earlier_attempt(ident: Identity, row: FileRow) -> bool:
    """Whether ``row`` was written by an earlier attempt of the job ``ident`` acts for."""
    return (
        ident.kind is TokenKind.JOB
        and row.job_id is not None
        and row.job_id == ident.job_id
        and row.attempt is not None
        and ident.attempt is not None
        and row.attempt < ident.attempt
    )


def _drop_replaced(
    ctx: Context,
    conn: Connection,
    regs: Sequence[FileRegistration],
    stale: dict[str, FileRow],
    now: datetime,
) -> list[_Replaced]:
    """Delete the entries a rerun replaces (replicas, ancestry, metadata; a ``remove``
    event each) in the registering transaction; what their bytes were, to remove later."""
    if not stale:
        return []
    ids = [row.file_id for row in stale.values()]
    reps = ctx.catalog.replicas(conn, ids)
    ctx.meta.delete_files(conn, ids)
    ctx.catalog.delete_files(conn, ids)
    removed = [NewEvent(EventKind.FILE_REMOVED, r.file_id, r.dir_id) for r in stale.values()]
    ctx.events.add(conn, removed, now)
    out = []
    for lfn, row in stale.items():
        assert row.job_id is not None
        assert row.attempt is not None
        kept = frozenset(r.se for r in regs if r.lfn == lfn and r.se)
        out.append(_Replaced(lfn, row.job_id, row.attempt, tuple(reps.get(row.file_id, ())), kept))
        log.info("%s: attempt %d of job %d replaced", lfn, row.attempt, row.job_id)
    return out


def _parent_ids(
    ctx: Context, conn: Connection, unique: dict[str, FileRegistration], new: set[str]
) -> dict[str, int]:
    """Ids of the ancestor LFNs of new files that are not in the batch; all must exist."""
    wanted = {p for lfn in new for p in unique[lfn].parents if p not in unique}
    if not wanted:
        return {}
    found, _ = resolve(ctx, conn, wanted)
    missing = wanted - found.keys()
    if missing:
        raise InvalidInput(
            f"parent files not in the catalog: {shown_names(missing)}", missing=sorted(missing)
        )
    return {lfn: row.file_id for lfn, row in found.items()}


def _checked_metadata(
    ctx: Context, conn: Connection, regs: Sequence[FileRegistration]
) -> tuple[dict[str, FieldType], list[tuple[str, dict[str, Scalar]]]] | None:
    """(field types, [(lfn, coerced values)]) of the registrations carrying metadata.

    The field types are read once for the batch and passed to ``logic.metadata.check_values``
    (reading them per file would cost most of a bulk registration).
    """
    with_meta = [r for r in regs if r.metadata]
    if not with_meta:
        return None
    types = ctx.meta.field_types(conn)
    checked: list[tuple[str, dict[str, Scalar]]] = []
    for reg in with_meta:
        try:
            values = meta_logic.check_values(ctx, conn, reg.metadata, types=types)
        except InvalidInput as exc:
            raise InvalidInput(
                f"{reg.lfn}: {exc.message}", **{**exc.detail, "lfn": reg.lfn}
            ) from None
        checked.append((reg.lfn, values))
    return types, checked
