"""Data operations: storage transfers kept consistent with the catalog.

Every transfer is checked (size and ADLER32, counted while the bytes pass and read back from
the SE) before the catalog changes; a transfer or a registration that fails removes what it
stored, so the catalog never names a replica that is not there. A file's path on every SE
is its LFN (:func:`ctaprod.core.storage.se_path`).

Transfers land at a temporary path of their own next to the final one
(:func:`temporary_path`), are checked there, registered, and only then renamed to the final
path. The catalog decides between concurrent transfers of the same LFN (one creates the
entry, the others get Conflict and remove only their own temporary copy), so a loser never
overwrites or removes the winner's file. A rename that fails undoes the registration.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, cast

from ctaprod.core.catalog import FileInfo, FileRegistration, ReplicaRef
from ctaprod.core.checksum import Adler32
from ctaprod.core.errors import Conflict, CtaprodError, InvalidInput, NotFound, Unavailable
from ctaprod.core.identity import Identity
from ctaprod.core.properties import TokenKind
from ctaprod.core.storage import (
    UPLOAD_MARK,
    FileUpload,
    RemovalResult,
    StoredFile,
    se_path,
    upload_path,
)
from ctaprod.logic import catalog
from ctaprod.logic import storage as S
from ctaprod.logic.authz import refuse_pilot
from ctaprod.logic.context import Context
from ctaprod.logic.job_scope import PAYLOAD, require_job_scope
from ctaprod.resources.storage import StorageElement

__all__ = [
    "OpenReplica",
    "open_best_replica",
    "put_and_register",
    "remove_file",
    "remove_replica",
    "replicate_and_register",
    "temporary_path",
]

log = logging.getLogger("ctaprod.dataops")

TEMPORARY_MARK = UPLOAD_MARK


def temporary_path(lfn: str) -> str:
    """A fresh SE path next to ``lfn``'s where a transfer lands before its rename into place:
    ``<dir>/.<name>~ctaprod-upload-<32 hex>``, never an LFN."""
    return upload_path(lfn, uuid.uuid4().hex)


class _Counted:
    """A read stream that counts and ADLER32-sums the bytes read through it."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self._digest = Adler32()

    def read(self, size: int = -1) -> bytes:
        chunk = self.source.read(size)
        self._digest.update(chunk)
        return chunk

    @property
    def size(self) -> int:
        return self._digest.size

    @property
    def checksum(self) -> str:
        return self._digest.hexdigest()


@dataclass
class OpenReplica:
    """An open replica: the catalog entry, the SE it is read from, and the stream."""

    info: FileInfo
    se: str
    stream: BinaryIO


def _mismatch(what: str, se: str, path: str, expected: object, found: object) -> Unavailable:
    return Unavailable(
        f"{se}: {what} mismatch for {path}: expected {expected}, found {found}",
        se=se,
        path=path,
        reason="checksum_mismatch" if what == "checksum" else "size_mismatch",
    )


def _discard(se: StorageElement, path: str) -> None:
    """Remove a copy that must not stay; a failure here is logged, the original error wins."""
    try:
        se.remove(path)
    except CtaprodError as exc:
        log.warning("could not remove the unchecked copy %s on %s: %s", path, se.name, exc)


def _verify(se: StorageElement, path: str, size: int, checksum: str, shown: str) -> None:
    """Size and ADLER32 of ``path`` on ``se`` as stored, against what was sent; errors name
    ``shown`` (the final path of a temporary copy)."""
    stored_size = se.size(path)
    if stored_size != size:
        raise _mismatch("size", se.name, shown, size, stored_size)
    stored = se.checksum(path)
    if stored != checksum:
        raise _mismatch("checksum", se.name, shown, checksum, stored)


def _place(se: StorageElement, temporary: str, lfn: str, undo: Callable[[], object]) -> None:
    """Rename the checked and registered ``temporary`` copy to ``lfn``'s path. If that
    fails, ``undo`` the registration, remove the copy and raise Unavailable naming the SE."""
    try:
        se.rename(temporary, se_path(lfn))
    except BaseException as exc:
        undone = "its registration was undone"
        try:
            undo()
        except Exception as undo_exc:
            why = undo_exc.message if isinstance(undo_exc, CtaprodError) else repr(undo_exc)
            log.error("could not undo the registration of %s on %s: %s", lfn, se.name, why)
            undone = f"its registration could NOT be undone ({why})"
        _discard(se, temporary)
        if not isinstance(exc, CtaprodError):
            raise
        raise Unavailable(
            f"{se.name}: could not move {lfn} into place ({exc.message}); {undone}",
            se=se.name,
            lfn=lfn,
        ) from exc


def _file(ctx: Context, lfn: str) -> FileInfo:
    info = catalog.get_files(ctx, [lfn]).get(lfn)
    if info is None:
        raise NotFound(f"no file {lfn} in the catalog", lfn=lfn)
    return info


def _check_write(ctx: Context, ident: Identity, lfn: str) -> None:
    with ctx.db.read() as conn:
        catalog.check_write(ctx, conn, ident, lfn)


def put_and_register(
    ctx: Context, ident: Identity, upload: FileUpload, stream: BinaryIO, se: str | None = None
) -> StoredFile:
    """Store ``stream`` as ``upload.lfn`` on ``se`` (default SE if None), check it, register it.

    Write permission and SE access are checked before any byte moves; an existing LFN is a
    Conflict. The bytes go to a temporary path, are checked, the file is registered (only
    if nobody registered the LFN meanwhile: Conflict otherwise), then renamed into place. A
    cut or mismatching upload, a refused registration or a failed rename leaves no file and
    no entry.
    """
    se_name = se or S.default_se(ctx)
    lfn = upload.lfn
    S.check_access(ctx, se_name, "write")
    _check_write(ctx, ident, lfn)
    if catalog.get_files(ctx, [lfn]):
        raise Conflict(f"{lfn} is already in the catalog: remove it first", lfn=lfn)
    storage = ctx.storage(se_name)
    temporary = temporary_path(lfn)
    counted = _Counted(stream)
    storage.put(temporary, cast(BinaryIO, counted))  # a failing source leaves no file
    try:
        if upload.size is not None and counted.size != upload.size:
            raise InvalidInput(
                f"upload of {lfn} cut or wrong: {counted.size} bytes arrived, "
                f"{upload.size} announced",
                lfn=lfn,
            )
        if upload.checksum is not None and counted.checksum != upload.checksum:
            raise InvalidInput(
                f"upload of {lfn} corrupted: ADLER32 {counted.checksum} arrived, "
                f"{upload.checksum} announced",
                lfn=lfn,
            )
        _verify(storage, temporary, counted.size, counted.checksum, se_path(lfn))
        reg = FileRegistration(
            lfn=lfn,
            size=counted.size,
            checksum=counted.checksum,
            guid=upload.guid,
            se=se_name,
            metadata=upload.metadata,
            parents=upload.parents,
        )
        catalog.register_files(ctx, ident, [reg], verify=False, exclusive=True)
    except BaseException:
        _discard(storage, temporary)
        raise
    _place(storage, temporary, lfn, lambda: catalog.remove_file_entries(ctx, ident, [lfn]))
    return StoredFile(lfn=lfn, se=se_name, size=counted.size, checksum=counted.checksum)


def _ranked_sources(ctx: Context, info: FileInfo, site: str | None) -> list[str]:
    """Readable replicas of ``info``, those at ``site`` first; Unavailable if none is."""
    readable, refused = S.usable(ctx, info.replicas, "read")
    if not readable:
        why = "; ".join(f"{se}: {reason}" for se, reason in refused.items()) or "no replica"
        raise Unavailable(f"no readable replica of {info.lfn} ({why})", lfn=info.lfn)
    local = set(S.ses_at_site(ctx, site)) if site else set()
    return sorted(readable, key=lambda se: se not in local)


def open_best_replica(
    ctx: Context, ident: Identity, lfn: str, site: str | None = None
) -> OpenReplica:
    """Open the best replica of ``lfn``: readable SEs, those at ``site`` first, skipping
    copies whose stored size disagrees with the catalog. The caller closes the stream."""
    refuse_pilot(ident, "read files")
    if ident.kind is TokenKind.JOB:  # a payload action: only while the job runs
        with ctx.db.read() as conn:
            require_job_scope(ctx, conn, ident, allowed=PAYLOAD)
    info = _file(ctx, lfn)
    path = se_path(info.lfn)
    errors: list[str] = []
    for se_name in _ranked_sources(ctx, info, site):
        storage = ctx.storage(se_name)
        try:
            size = storage.size(path)
            if size != info.size:
                raise _mismatch("size", se_name, path, info.size, size)
            return OpenReplica(info, se_name, storage.open(path))
        except (NotFound, Unavailable) as exc:
            errors.append(exc.message)
    raise Unavailable(f"no replica of {lfn} could be read: {'; '.join(errors)}", lfn=lfn)


def _copy(src: StorageElement, dst: StorageElement, info: FileInfo, temporary: str) -> None:
    """Copy ``info`` from ``src`` to ``temporary`` on ``dst`` through this process; checked
    on both sides against the catalog, the copy removed if anything disagrees."""
    path = se_path(info.lfn)
    with src.open(path) as stream:
        counted = _Counted(stream)
        dst.put(temporary, cast(BinaryIO, counted))
    try:
        if counted.size != info.size:
            raise _mismatch("size", src.name, path, info.size, counted.size)
        if counted.checksum != info.checksum:
            raise _mismatch("checksum", src.name, path, info.checksum, counted.checksum)
        _verify(dst, temporary, info.size, info.checksum, path)
    except BaseException:
        _discard(dst, temporary)
        raise


def replicate_and_register(
    ctx: Context, ident: Identity, lfn: str, target_se: str, source_se: str | None = None
) -> StoredFile:
    """Copy ``lfn`` to ``target_se`` (from ``source_se`` or the best readable replica,
    trying the next one on failure), verify it against the catalog, then add the replica.
    A replica already on the target is left alone (``copied`` False), also when a concurrent
    replication registers it first: the copy goes to a temporary path and is renamed into
    place only by the one that added the replica entry."""
    info = _file(ctx, lfn)
    done = StoredFile(lfn=info.lfn, se=target_se, size=info.size, checksum=info.checksum)
    if target_se in info.replicas:
        return done.model_copy(update={"copied": False})
    S.check_access(ctx, target_se, "write")
    _check_write(ctx, ident, info.lfn)
    if source_se is not None:
        if source_se not in info.replicas:
            raise NotFound(f"{lfn} has no replica on {source_se}", lfn=lfn, se=source_se)
        S.check_access(ctx, source_se, "read")
        sources = [source_se]
    else:
        sources = _ranked_sources(ctx, info, ctx.settings.storage_element(target_se).site)
    target = ctx.storage(target_se)
    temporary = temporary_path(info.lfn)
    errors: list[str] = []
    for source in sources:
        try:
            _copy(ctx.storage(source), target, info, temporary)
            break
        except (NotFound, Unavailable) as exc:
            if len(sources) == 1:
                raise
            errors.append(exc.message)
    else:
        raise Unavailable(f"could not replicate {lfn}: {'; '.join(errors)}", lfn=lfn)
    ref = ReplicaRef(lfn=info.lfn, se=target_se)
    try:
        added = catalog.add_replicas(ctx, ident, [ref], verify=False)
    except BaseException:
        _discard(target, temporary)
        raise
    if not added:  # a concurrent replication registered it first: its copy is in place
        _discard(target, temporary)
        return done.model_copy(update={"copied": False})
    _place(target, temporary, info.lfn, lambda: catalog.remove_replica_entries(ctx, ident, [ref]))
    return done


def remove_file(ctx: Context, ident: Identity, lfn: str) -> RemovalResult:
    """Remove every replica of ``lfn`` from storage (a missing copy is fine), each replica
    entry as its copy goes, and the file entry with the last one. Replicas that could not be
    removed keep their entries; then Unavailable names them."""
    info = _file(ctx, lfn)
    _check_write(ctx, ident, info.lfn)
    path = se_path(info.lfn)
    result = RemovalResult(lfn=info.lfn)
    writable, refused = S.usable(ctx, info.replicas, "write")
    result.failed.update(refused)
    for se_name in writable:
        try:
            ctx.storage(se_name).remove(path)
        except CtaprodError as exc:
            result.failed[se_name] = exc.message
            continue
        if se_name == writable[-1] and not result.failed:
            catalog.remove_file_entries(ctx, ident, [info.lfn])
            result.file_removed = True
        else:
            catalog.remove_replica_entries(ctx, ident, [ReplicaRef(lfn=info.lfn, se=se_name)])
        result.removed.append(se_name)
    if not info.replicas:
        catalog.remove_file_entries(ctx, ident, [info.lfn])
        result.file_removed = True
    if result.failed:
        why = "; ".join(f"{se}: {reason}" for se, reason in result.failed.items())
        raise Unavailable(
            f"{lfn}: removed from {', '.join(result.removed) or 'no SE'}; kept where "
            f"storage failed ({why})",
            lfn=lfn,
            removed=result.removed,
            failed=result.failed,
        )
    return result


def remove_replica(ctx: Context, ident: Identity, lfn: str, se: str) -> RemovalResult:
    """Remove the copy of ``lfn`` on ``se`` and then its entry; the last replica is refused
    (Conflict: remove the file instead)."""
    info = _file(ctx, lfn)
    _check_write(ctx, ident, info.lfn)
    if se not in info.replicas:
        raise NotFound(f"{lfn} has no replica on {se}", lfn=lfn, se=se)
    if len(info.replicas) == 1:
        raise Conflict(
            f"{se} holds the last replica of {lfn}: remove the file instead (dm rm)",
            lfn=lfn,
            se=se,
        )
    S.check_access(ctx, se, "write")
    ctx.storage(se).remove(se_path(info.lfn))
    catalog.remove_replica_entries(ctx, ident, [ReplicaRef(lfn=info.lfn, se=se)])
    return RemovalResult(lfn=info.lfn, removed=[se])
