"""Catalog <-> storage consistency: the catalog's replicas on one SE under a directory
against the files the SE holds there (production validation: no orphans, sizes and
checksums right).

Two streamed passes, so that a directory of any size holds one batch in memory, plus the
ids of the files found on the SE (a set of integers):

1. the SE listing (:meth:`StorageElement.list`), looked up in the catalog
   :data:`BATCH` paths at a time: files without a replica entry on the SE are orphans
   (temporary upload files of :mod:`ctaprod.logic.dataops` are ``stale_uploads``), sizes
   are compared, and ADLER32 too when asked (one SE call per file);
2. the catalog tree under the directory, in keyset pages of the files with a replica on
   the SE: an entry whose file was not listed is ``missing_on_storage``.

Files written or removed while the check runs can show as orphans or missing: check again
before acting on them.  Reading needs a valid token and an SE allowed for read; removing
stale uploads needs Operator or Admin and an SE allowed for write.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from itertools import islice

from ctaprod.core.consistency import DEFAULT_LIMIT, DEFAULT_STALE_AGE, MAX_LIMIT, ConsistencyReport
from ctaprod.core.errors import CtaprodError, InvalidInput, NotFound
from ctaprod.core.identity import Identity
from ctaprod.core.lfn import ROOT, check_lfn
from ctaprod.core.properties import Property
from ctaprod.core.storage import se_path
from ctaprod.db.catalog import DirRow, join_path
from ctaprod.logic import storage as S
from ctaprod.logic.catalog_access import resolve
from ctaprod.logic.context import Context
from ctaprod.logic.dataops import TEMPORARY_MARK
from ctaprod.resources.storage import StorageElement

__all__ = ["BATCH", "PAGE", "check"]

log = logging.getLogger("ctaprod.consistency")

BATCH = 2_000  # SE paths looked up in the catalog at once
PAGE = 5_000  # catalog rows per keyset page


def _batches(items: Iterable[tuple[str, int]], size: int) -> Iterator[list[tuple[str, int]]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


class _Checker:
    def __init__(
        self,
        ctx: Context,
        report: ConsistencyReport,
        storage: StorageElement,
        *,
        remove: bool,
        cutoff: datetime,
        force: bool,
    ) -> None:
        self.ctx = ctx
        self.report = report
        self.storage = storage
        self.remove = remove
        self.cutoff = cutoff
        self.force = force
        self.seen: set[int] = set()  # ids of the files found on the SE with their entry

    # -- pass 1: the SE listing --------------------------------------------------------------
    def storage_pass(self, path: str) -> None:
        for batch in _batches(self.storage.list(path), BATCH):
            self._batch(batch)

    def _batch(self, batch: list[tuple[str, int]]) -> None:
        report, limit, se = self.report, self.report.limit, self.report.se
        sizes: dict[str, int] = {}
        for path, size in batch:
            report.storage_files += 1
            if TEMPORARY_MARK in path.rpartition("/")[2]:
                self._stale(path)
                continue
            try:
                lfn = check_lfn(path)
            except InvalidInput:  # not a name the catalog can hold
                report.orphans_on_storage.add(path, limit)
                continue
            sizes[lfn] = size
        with self.ctx.db.read() as conn:
            files, _ = resolve(self.ctx, conn, sizes)
            replicas = self.ctx.catalog.replicas(conn, [row.file_id for row in files.values()])
        to_sum: list[tuple[str, str]] = []
        for lfn, size in sizes.items():
            row = files.get(lfn)
            if row is None or se not in replicas.get(row.file_id, ()):
                report.orphans_on_storage.add(lfn, limit)
                continue
            self.seen.add(row.file_id)
            if row.size != size:
                report.size_mismatch.add(lfn, limit)
            elif report.checksums:
                to_sum.append((lfn, row.checksum))
        for lfn, expected in to_sum:  # outside the transaction: one SE call each
            try:
                actual = self.storage.checksum(se_path(lfn))
            except NotFound:  # removed since the listing
                report.missing_on_storage.add(lfn, limit)
                continue
            if actual.lower() != expected.lower():
                report.checksum_mismatch.add(lfn, limit)

    def _stale(self, path: str) -> None:
        report = self.report
        report.stale_uploads.add(path, report.limit)
        if not self.remove:
            return
        try:
            when = self.storage.modified(path)
        except NotFound:  # renamed into place or removed meanwhile: nothing to do
            report.kept_stale_uploads += 1
            return
        if (when is None and not self.force) or (when is not None and when > self.cutoff):
            report.kept_stale_uploads += 1
            return
        try:
            removed = self.storage.remove(path)
        except CtaprodError as exc:
            log.warning("%s: cannot remove the stale upload %s: %s", report.se, path, exc)
            removed = False
        if removed:
            report.removed_stale_uploads.add(path, report.limit)
            log.info("%s: removed the stale upload %s (modified %s)", report.se, path, when)
        else:
            report.kept_stale_uploads += 1

    # -- pass 2: the catalog ------------------------------------------------------------------
    def catalog_pass(self, top: DirRow) -> None:
        report = self.report
        for dir_id, directory in self._dirs(top.dir_id, top.path):
            after: str | None = None
            while True:
                with self.ctx.db.read() as conn:
                    rows = self.ctx.catalog.replica_files_page(conn, dir_id, report.se, after, PAGE)
                for name, file_id in rows:
                    report.catalog_replicas += 1
                    if file_id not in self.seen:
                        report.missing_on_storage.add(join_path(directory, name), report.limit)
                if len(rows) < PAGE:
                    break
                after = rows[-1][0]

    def _dirs(self, dir_id: int, path: str) -> Iterator[tuple[int, str]]:
        """``dir_id`` and every directory below it (depth first, one page at a time)."""
        yield dir_id, path
        after: str | None = None
        while True:
            with self.ctx.db.read() as conn:
                rows = self.ctx.catalog.subdir_ids_page(conn, dir_id, after, PAGE)
            for name, child in rows:
                yield from self._dirs(child, join_path(path, name))
            if len(rows) < PAGE:
                return
            after = rows[-1][0]


def _catalog_dir(ctx: Context, path: str) -> DirRow | None:
    """The catalog directory ``path`` (None when the catalog has none: every file on the SE
    there is then an orphan); InvalidInput when ``path`` is a file."""
    with ctx.db.read() as conn:
        row = ctx.catalog.dirs_by_path(conn, [path]).get(path)
        if row is not None or path == ROOT:
            return row
        files, _ = resolve(ctx, conn, [path])
    if path in files:
        raise InvalidInput(f"{path} is a file, not a directory", lfn=path)
    return None


def check(
    ctx: Context,
    ident: Identity,
    path: str,
    se: str,
    *,
    checksums: bool = False,
    limit: int = DEFAULT_LIMIT,
    remove_stale_uploads: bool = False,
    min_age: timedelta = timedelta(seconds=DEFAULT_STALE_AGE),
    force: bool = False,
) -> ConsistencyReport:
    """Compare the catalog's replicas on ``se`` under the directory ``path`` (recursively)
    with the SE's files there; see :class:`ConsistencyReport`.

    ``checksums``: also compare ADLER32 (the SE reads or looks up every file).
    ``limit``: LFNs listed per kind (the counts are complete).
    ``remove_stale_uploads`` (Operator or Admin): remove the temporary upload files last
    modified more than ``min_age`` ago; when the SE cannot tell their age they are kept,
    unless ``force``.
    """
    path = check_lfn(path)
    if not 0 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 0 and {MAX_LIMIT}, not {limit}")
    if min_age < timedelta(0):
        raise InvalidInput("min_age must not be negative")
    if remove_stale_uploads:
        ident.require(Property.OPERATOR, Property.ADMIN)
    S.check_access(ctx, se, "read")
    if remove_stale_uploads:
        S.check_access(ctx, se, "write")
    top = _catalog_dir(ctx, path)
    report = ConsistencyReport(path=path, se=se, checksums=checksums, limit=limit)
    checker = _Checker(
        ctx,
        report,
        ctx.storage(se),
        remove=remove_stale_uploads,
        cutoff=ctx.clock() - min_age,
        force=force,
    )
    checker.storage_pass(path)
    if top is not None:
        checker.catalog_pass(top)
    log.info(
        "%s on %s: %d files on storage, %d replica entries, consistent: %s",
        path,
        se,
        report.storage_files,
        report.catalog_replicas,
        report.consistent,
    )
    return report
