"""Data operations: storage transfers kept consistent with the catalog.

Every transfer is checked (size and ADLER32, counted while the bytes pass and read back from
the SE) before the catalog changes; a transfer or a registration that fails removes what it
stored, so the catalog never names a replica that is not there. A file's path on every SE
is its LFN (:func:`ctaprod.core.storage.se_path`).
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from typing import BinaryIO, cast

from ctaprod.core.catalog import FileInfo, FileRegistration, ReplicaRef
from ctaprod.core.errors import Conflict, CtaprodError, InvalidInput, NotFound, Unavailable
from ctaprod.core.identity import Identity
from ctaprod.core.storage import FileUpload, RemovalResult, StoredFile, se_path
from ctaprod.logic import catalog
from ctaprod.logic import storage as S
from ctaprod.logic.context import Context
from ctaprod.resources.storage import StorageElement

__all__ = [
    "OpenReplica",
    "open_best_replica",
    "put_and_register",
    "remove_file",
    "remove_replica",
    "replicate_and_register",
]

log = logging.getLogger("ctaprod.dataops")


class _Counted:
    """A read stream that counts and ADLER32-sums the bytes read through it."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.size = 0
        self._adler = 1

    def read(self, size: int = -1) -> bytes:
        chunk = self.source.read(size)
        self.size += len(chunk)
        self._adler = zlib.adler32(chunk, self._adler)
        return chunk

    @property
    def checksum(self) -> str:
        return f"{self._adler & 0xFFFFFFFF:08x}"


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


def _verify(se: StorageElement, path: str, size: int, checksum: str) -> None:
    """Size and ADLER32 of ``path`` on ``se`` as stored, against what was sent."""
    stored_size = se.size(path)
    if stored_size != size:
        raise _mismatch("size", se.name, path, size, stored_size)
    stored = se.checksum(path)
    if stored != checksum:
        raise _mismatch("checksum", se.name, path, checksum, stored)


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
    Conflict. A cut or mismatching upload, or a refused registration, leaves no file.
    """
    se_name = se or S.default_se(ctx)
    lfn = upload.lfn
    S.check_access(ctx, se_name, "write")
    _check_write(ctx, ident, lfn)
    if catalog.get_files(ctx, [lfn]):
        raise Conflict(f"{lfn} is already in the catalog: remove it first", lfn=lfn)
    storage = ctx.storage(se_name)
    path = se_path(lfn)
    counted = _Counted(stream)
    storage.put(path, cast(BinaryIO, counted))  # a failing source leaves no file
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
        _verify(storage, path, counted.size, counted.checksum)
        reg = FileRegistration(
            lfn=lfn,
            size=counted.size,
            checksum=counted.checksum,
            guid=upload.guid,
            se=se_name,
            metadata=upload.metadata,
            parents=upload.parents,
        )
        catalog.register_files(ctx, ident, [reg], verify=False)
    except BaseException:
        _discard(storage, path)
        raise
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


def _copy(src: StorageElement, dst: StorageElement, info: FileInfo) -> None:
    """Copy ``info`` from ``src`` to ``dst`` through this process; checked on both sides
    against the catalog, the target copy removed if anything disagrees."""
    path = se_path(info.lfn)
    with src.open(path) as stream:
        counted = _Counted(stream)
        dst.put(path, cast(BinaryIO, counted))
    try:
        if counted.size != info.size:
            raise _mismatch("size", src.name, path, info.size, counted.size)
        if counted.checksum != info.checksum:
            raise _mismatch("checksum", src.name, path, info.checksum, counted.checksum)
        _verify(dst, path, info.size, info.checksum)
    except BaseException:
        _discard(dst, path)
        raise


def replicate_and_register(
    ctx: Context, ident: Identity, lfn: str, target_se: str, source_se: str | None = None
) -> StoredFile:
    """Copy ``lfn`` to ``target_se`` (from ``source_se`` or the best readable replica,
    trying the next one on failure), verify it against the catalog, then add the replica.
    A replica already on the target is left alone (``copied`` False)."""
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
    errors: list[str] = []
    for source in sources:
        try:
            _copy(ctx.storage(source), target, info)
            break
        except (NotFound, Unavailable) as exc:
            if len(sources) == 1:
                raise
            errors.append(exc.message)
    else:
        raise Unavailable(f"could not replicate {lfn}: {'; '.join(errors)}", lfn=lfn)
    try:
        catalog.add_replicas(ctx, ident, [ReplicaRef(lfn=info.lfn, se=target_se)], verify=False)
    except BaseException:
        _discard(target, se_path(info.lfn))
        raise
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
    if se not in info.replicas:
        raise NotFound(f"{lfn} has no replica on {se}", lfn=lfn, se=se)
    if len(info.replicas) == 1:
        raise Conflict(
            f"{se} holds the last replica of {lfn}: remove the file instead (dm rm)",
            lfn=lfn,
            se=se,
        )
    _check_write(ctx, ident, info.lfn)
    S.check_access(ctx, se, "write")
    ctx.storage(se).remove(se_path(info.lfn))
    catalog.remove_replica_entries(ctx, ident, [ReplicaRef(lfn=info.lfn, se=se)])
    return RemovalResult(lfn=info.lfn, removed=[se])
