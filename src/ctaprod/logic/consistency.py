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
before acting on them.  A check walks a whole SE directory: it needs an Operator or Admin
user token, an SE allowed for read (and for write to remove stale uploads), and it is
bounded (:data:`MAX_FILES` files, :data:`MAX_SECONDS` seconds per call); a check that hits a
bound says so in ``truncated`` and is not ``consistent``: check the subdirectories apart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from itertools import islice

from ctaprod.core.consistency import DEFAULT_LIMIT, DEFAULT_STALE_AGE, MAX_LIMIT, ConsistencyReport
from ctaprod.core.errors import CtaprodError, InvalidInput, NotFound
from ctaprod.core.identity import Identity
from ctaprod.core.lfn import ROOT, check_lfn
from ctaprod.core.storage import se_path
from ctaprod.db.catalog import DirRow, join_path
from ctaprod.logic import storage as S
from ctaprod.logic.authz import require_operator
from ctaprod.logic.catalog_access import resolve
from ctaprod.logic.context import Context
from ctaprod.logic.dataops import TEMPORARY_MARK
from ctaprod.resources.storage import StorageElement

__all__ = ["BATCH", "MAX_FILES", "MAX_SECONDS", "PAGE", "check", "compare"]

log = logging.getLogger("ctaprod.consistency")

BATCH = 2_000  # SE paths looked up in the catalog at once
PAGE = 5_000  # catalog rows per keyset page
MAX_FILES = 500_000  # SE files plus catalog replica entries looked at by one API call
MAX_SECONDS = 600.0  # wall time of one API call


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
        max_files: int | None = None,
        max_seconds: float | None = None,
    ) -> None:
        self.ctx = ctx
        self.max_files = max_files
        self.deadline = None if max_seconds is None else time.monotonic() + max_seconds
        self.report = report
        self.storage = storage
        self.remove = remove
        self.cutoff = cutoff
        self.force = force
        self.seen: set[int] = set()  # ids of the files found on the SE with their entry

    # -- pass 1: the SE listing --------------------------------------------------------------
    def _over(self) -> bool:
        """True (and the report says why) once a bound is reached."""
        report = self.report
        looked = report.storage_files + report.catalog_replicas
        if self.max_files is not None and looked >= self.max_files:
            report.truncated = f"stopped after {looked} files: the limit of one check"
        elif self.deadline is not None and time.monotonic() > self.deadline:
            report.truncated = f"stopped after {looked} files: the time limit of one check"
        return bool(report.truncated)

    def storage_pass(self, path: str) -> bool:
        """The SE listing; False when a bound stopped it (the catalog pass is then moot)."""
        for batch in _batches(self.storage.list(path), BATCH):
            if self.max_files is not None:
                room = self.max_files - self.report.storage_files
                if len(batch) > room:
                    self._batch(batch[:room])
                    self.report.truncated = (
                        f"stopped after {self.max_files} files on the SE: the limit of one check"
                    )
                    return False
            if self.deadline is not None and time.monotonic() > self.deadline:
                self._over()
                return False
            self._batch(batch)
        return True

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
                if self._over():
                    return
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
    Operator or Admin only; bounded by :data:`MAX_FILES` and :data:`MAX_SECONDS`.
    ``remove_stale_uploads``: remove the temporary upload files last
    modified more than ``min_age`` ago; when the SE cannot tell their age they are kept,
    unless ``force``.
    """
    require_operator(ident, "run a consistency check")
    return compare(
        ctx,
        path,
        se,
        checksums=checksums,
        limit=limit,
        remove_stale_uploads=remove_stale_uploads,
        min_age=min_age,
        force=force,
        max_files=MAX_FILES,
        max_seconds=MAX_SECONDS,
    )


def compare(
    ctx: Context,
    path: str,
    se: str,
    *,
    checksums: bool = False,
    limit: int = DEFAULT_LIMIT,
    remove_stale_uploads: bool = False,
    min_age: timedelta = timedelta(seconds=DEFAULT_STALE_AGE),
    force: bool = False,
    max_files: int | None = None,
    max_seconds: float | None = None,
) -> ConsistencyReport:
    """The check itself, for callers that authorized it (:func:`check`, production
    validation); ``max_files`` and ``max_seconds`` bound it (None: unbounded)."""
    path = check_lfn(path)
    if not 0 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 0 and {MAX_LIMIT}, not {limit}")
    if min_age < timedelta(0):
        raise InvalidInput("min_age must not be negative")
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
        max_files=max_files,
        max_seconds=max_seconds,
    )
    if checker.storage_pass(path) and top is not None:
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
