"""Files reach transformations from the catalog's event outbox, within about a second.

The consumer ``transformations`` (:mod:`ctaprod.logic.events`: durable cursor, each batch of
events applied and the cursor moved in one transaction, so nothing is lost or applied twice
across restarts and replicas) turns events into attachments:

- a file registered: its effective metadata is tested against the transformations whose
  queries it may satisfy (:class:`ctaprod.core.trans_index.QueryIndex`: one equality key per
  query), and it is attached as Unused to each that matches;
- metadata set on a file, or on a directory (every file below it): the same, against only the
  transformations whose query reads a field that changed. A directory with more files than
  one page (5,000) below it is queued (``trans_dir_scans``) and paged through in
  transactions of its own, its progress kept: a change over a million files never holds the
  consumer's transaction (nor SQLite's write lock) for long;
- a file removed from the catalog: Removed in every transformation that has it.

Attaching is idempotent (a file already attached stays as it is), so an event that overlaps
the bulk scan of a transformation's creation does no harm. The creation and the consumer take
the consumer's cursor row in the same order (``lock_cursor``): a transformation committed
while a batch waits is in the index that batch is evaluated against, so no file falls between
the scan and the events. The index is rebuilt when the set of transformations that take files
changes (their ids and last updates), read inside the batch's transaction.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, RowMapping, select
from sqlalchemy.exc import DBAPIError

from ctaprod.core.events import Event, EventKind
from ctaprod.core.metaquery import parse
from ctaprod.core.statemachine import Change
from ctaprod.core.trans_index import QueryIndex
from ctaprod.core.trans_states import ATTACHING, TransFileStatus
from ctaprod.db.engine import is_deadlock
from ctaprod.db.tables import transformations
from ctaprod.logic import events as E
from ctaprod.logic.context import Context
from ctaprod.logic.trans_states import change_trans_files

log = logging.getLogger(__name__)
CONSUMER = "transformations"
BATCH = 1000  # events per transaction
MAX_BATCHES = 20  # per run
FILE_PAGE = 5000  # files of a directory event evaluated per step
TF = TransFileStatus
T = transformations.c


def ensure_consumer(ctx: Context) -> None:
    """Register the consumer (idempotent): from now on every catalog change reaches it.

    The first time, the backlog of events written while no consumer existed is sequenced
    first and left behind: those files were in the catalog before any transformation, and a
    transformation's creation finds them with its own scan (a catalog of a million files
    would otherwise be replayed through the trigger)."""
    if any(c.consumer == CONSUMER for c in E.consumers(ctx)):
        return
    E.sequence(ctx)
    E.register_consumer(ctx, CONSUMER)


class Trigger:
    """Holds the query index between batches (rebuilt when the transformations change)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._signature: tuple[tuple[int, Any], ...] | None = None
        self._index = QueryIndex({})
        self._registered = False

    def index(self, conn: Connection) -> QueryIndex:
        """The index of the transformations that take files now (read in ``conn``)."""
        rows = conn.execute(
            select(T.trans_id, T.last_update, T.input_query)
            .where(T.status.in_([s.value for s in ATTACHING]), T.input_query.is_not(None))
            .order_by(T.trans_id)
        ).all()
        signature = tuple((int(r[0]), r[1]) for r in rows)
        if signature != self._signature:
            queries = {}
            for tid, _, text in rows:
                try:
                    queries[int(tid)] = parse(text)
                except Exception:  # a stored query that no longer parses: skip it, loudly
                    log.exception("transformation %s: its input query %r does not parse", tid, text)
            self._index = QueryIndex(queries)
            self._signature = signature
        return self._index

    def run(self, *, max_batches: int | None = MAX_BATCHES) -> int:
        """Apply the waiting events (``max_batches`` of ``BATCH`` at most, then let the agent
        sleep: other writers get SQLite's lock between runs); returns how many."""
        ctx = self.ctx
        if not self._registered:
            ensure_consumer(ctx)
            self._registered = True
        with ctx.db.read() as conn:
            idle = not ctx.events.waiting_for(conn, CONSUMER)
            scans = bool(ctx.trans.dir_scans(conn, limit=1)) if idle else True
        if idle:
            return self.scan_dirs() if scans else 0
        done = batches = deadlocks = 0
        while max_batches is None or batches < max_batches:
            try:
                n = E.consume(ctx, CONSUMER, self.apply, limit=BATCH)
            except DBAPIError as exc:
                # A deadlock victim (MariaDB, PostgreSQL) rolled the batch back whole, cursor
                # included: apply it again.
                deadlocks += 1
                if not is_deadlock(exc) or deadlocks > 5:
                    raise
                time.sleep(random.uniform(0.01, 0.1) * deadlocks)
                continue
            done += n
            batches += 1
            if n < BATCH:
                break
        return done + self.scan_dirs()

    # --- one batch, in the consumer's transaction -------------------------------------------
    def apply(self, conn: Connection, events: Sequence[Event]) -> None:
        ctx = self.ctx
        index = self.index(conn)
        registered: list[int] = []
        changed: dict[int, set[str]] = defaultdict(set)
        dirs: dict[int, set[str]] = defaultdict(set)
        removed: list[int] = []
        for ev in events:
            if ev.kind is EventKind.FILE_REGISTERED and ev.file_id is not None:
                registered.append(ev.file_id)
            elif ev.kind is EventKind.FILE_META and ev.file_id is not None:
                changed[ev.file_id].update(ev.fields)
            elif ev.kind is EventKind.DIR_META and ev.dir_id is not None:
                dirs[ev.dir_id].update(ev.fields)
            elif ev.kind is EventKind.FILE_REMOVED and ev.file_id is not None:
                removed.append(ev.file_id)
        if len(index):
            pairs: set[tuple[int, int]] = set()
            pairs |= self._matches(conn, index, {f: None for f in registered})
            pairs |= self._matches(conn, index, {f: frozenset(fs) for f, fs in changed.items()})
            big: dict[int, set[str]] = {}
            for dir_id, fields in dirs.items():
                found = self._dir_matches(conn, index, dir_id, frozenset(fields))
                if found is None:
                    big[dir_id] = fields
                else:
                    pairs |= found
            if big:  # paged through in their own transactions (scan_dirs)
                ctx.trans.add_dir_scans(conn, big, ctx.clock())
            if pairs:
                ctx.trans.attach_many(conn, pairs, TF.UNUSED.value, ctx.clock())
        gone = set(removed) - set(registered)  # removed then registered again: a new file
        if gone:
            self._remove(conn, sorted(gone))

    def _matches(
        self,
        conn: Connection,
        index: QueryIndex,
        files: Mapping[int, frozenset[str] | None],
    ) -> set[tuple[int, int]]:
        """(transformation, file) pairs for these files; a file with fields given is tested
        only against the queries that read one of them."""
        if not files:
            return set()
        values = self.ctx.meta.effective_file_values(
            conn, list(files), self.ctx.meta.field_types(conn)
        )
        pairs: set[tuple[int, int]] = set()
        for file_id, meta in values.items():
            fields = files[file_id]
            among = None if fields is None else index.using(fields)
            if among is not None and not among:
                continue
            pairs.update((t, file_id) for t in index.matching(meta, among))
        return pairs

    def _dir_matches(
        self, conn: Connection, index: QueryIndex, dir_id: int, fields: frozenset[str]
    ) -> set[tuple[int, int]] | None:
        """The pairs of the files below a directory whose metadata changed, when they are
        few (one page); None when there are more: the change is queued, not done here."""
        if not index.using(fields):
            return set()
        meta = self.ctx.meta
        page = meta.files_of_dirs(conn, meta.subtree_dirs(conn, dir_id), 0, FILE_PAGE + 1)
        if len(page) > FILE_PAGE:
            return None
        return self._matches(conn, index, dict.fromkeys(page, fields))

    def scan_dirs(self, *, pages: int = 20) -> int:
        """Page through queued directory changes (a page of ``FILE_PAGE`` files per
        transaction, the progress recorded with it: a crash redoes one page at most, and
        attaching twice does nothing). Returns the files tested."""
        ctx = self.ctx
        tested = 0
        for _ in range(pages):
            with ctx.db.write() as conn:
                scans = ctx.trans.dir_scans(conn, limit=1)
                if not scans:
                    return tested
                scan = scans[0]
                index = self.index(conn)
                fields = frozenset(f for f in str(scan["fields"]).split(",") if f)
                dir_ids = ctx.meta.subtree_dirs(conn, int(scan["dir_id"]))
                page = ctx.meta.files_of_dirs(conn, dir_ids, int(scan["after_file"]), FILE_PAGE)
                if page and index.using(fields):
                    pairs = self._matches(conn, index, dict.fromkeys(page, fields))
                    if pairs:
                        ctx.trans.attach_many(conn, pairs, TF.UNUSED.value, ctx.clock())
                tested += len(page)
                done = len(page) < FILE_PAGE or not index.using(fields)
                ctx.trans.advance_dir_scan(conn, int(scan["id"]), None if done else page[-1])
        return tested

    def _remove(self, conn: Connection, file_ids: Sequence[int]) -> None:
        ctx = self.ctx
        rows = ctx.trans.file_row_ids(conn, file_ids=file_ids)
        if not rows:
            return

        def decide(r: RowMapping) -> list[Change[TransFileStatus]] | None:
            if r["status"] == TF.REMOVED.value:
                return None
            return [Change(TF.REMOVED, "the file left the catalog")]

        change_trans_files(ctx, conn, rows, decide, source="CatalogEvents", strict=False)


def lock_for_attach(ctx: Context, conn: Connection) -> None:
    """Order a bulk attachment (a creation, a new query) with the consumer's batches: see the
    module docstring. The consumer is registered first if it is not yet."""
    if ctx.events.lock_cursor(conn, CONSUMER) is None:
        raise RuntimeError("the transformations event consumer is not registered")
