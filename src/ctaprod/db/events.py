"""The catalog event outbox: writing, sequencing, reading, cursors and pruning (ADR 0005).

Writers insert events with ``seq`` NULL in their own transaction (one INSERT per batch, no
lock beyond the new rows). :meth:`EventDB.sequence` numbers the committed unsequenced
events under the lock of the ``event_sequencer`` row; consumers read ``seq > position``.
None of these methods commits: the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ctaprod.core.events import Event, EventKind, NewEvent, pack_fields, unpack_fields
from ctaprod.db.catalog import IN_CHUNK
from ctaprod.db.tables import catalog_events, event_cursors, event_sequencer

e, c, s = catalog_events.c, event_cursors.c, event_sequencer.c
SEQUENCER_ID = 1

_EVENT_COLS = (e.seq, e.kind, e.file_id, e.dir_id, e.se, e.fields, e.created)


@dataclass(frozen=True, slots=True)
class CursorRow:
    consumer: str
    position: int
    created: datetime
    updated: datetime


class EventDB:
    """``for_update``: lock rows with SELECT ... FOR UPDATE (MariaDB, PostgreSQL); SQLite
    write transactions are serialized by the engine, so there it is off."""

    def __init__(self, *, for_update: bool) -> None:
        self.for_update = for_update

    # --- writers --------------------------------------------------------------------------
    def add(self, conn: Connection, events: Sequence[NewEvent], now: datetime) -> None:
        """Append events, unsequenced, in the caller's transaction (one INSERT per batch);
        ValueError for an incomplete event (a bug in the caller), before anything is written."""
        if not events:
            return
        # Columns that are NULL in the whole batch (``se`` and ``fields`` for registrations)
        # are left out of the INSERT: fewer bound parameters per row in the hot path.
        with_se = any(ev.se is not None for ev in events)
        with_fields = any(ev.fields for ev in events)
        rows: list[dict[str, object]] = []
        for ev in events:
            ev.check()
            row: dict[str, object] = {
                "kind": ev.kind.value,
                "file_id": ev.file_id,
                "dir_id": ev.dir_id,
                "created": now,
            }
            if with_se:
                row["se"] = ev.se
            if with_fields:
                row["fields"] = pack_fields(ev.fields)
            rows.append(row)
        conn.execute(insert(catalog_events), rows)

    # --- sequencer ------------------------------------------------------------------------
    def sequence(self, conn: Connection, limit: int) -> int:
        """Number up to ``limit`` committed unsequenced events after the high-water mark, in
        ``event_id`` order; returns how many. Holds the sequencer lock until the caller
        commits, so keep the transaction to this call.

        Each event gets ``seq = event_id + offset`` with one offset for the run, chosen so
        that the smallest new seq is the mark + 1: one UPDATE per chunk of ids, no
        per-row parameters. Seqs increase strictly and may have gaps (an id committed
        later is numbered by a later run), which consumers do not care about.
        """
        last = self._lock_mark(conn)
        # A plain (consistent, non-locking) read: rows still uncommitted are invisible and
        # wait for a later run; the UPDATE below touches committed rows only, by primary
        # key, so it never waits for a writer.
        ids = list(
            conn.execute(
                select(e.event_id).where(e.seq.is_(None)).order_by(e.event_id).limit(limit)
            ).scalars()
        )
        if not ids:
            return 0
        offset = last + 1 - ids[0]
        for i in range(0, len(ids), IN_CHUNK):
            chunk = ids[i : i + IN_CHUNK]
            conn.execute(
                update(catalog_events).where(e.event_id.in_(chunk)).values(seq=e.event_id + offset)
            )
        conn.execute(
            update(event_sequencer).where(s.id == SEQUENCER_ID).values(last_seq=ids[-1] + offset)
        )
        return len(ids)

    def last_seq(self, conn: Connection) -> int:
        """The high-water mark: every seq handed out so far is at or below it."""
        mark = conn.execute(select(s.last_seq).where(s.id == SEQUENCER_ID)).scalar()
        return int(mark) if mark is not None else self._recovered_mark(conn)

    def unsequenced(self, conn: Connection) -> int:
        """How many visible events wait for a seq (the sequencer's backlog)."""
        return int(conn.execute(select(func.count()).where(e.seq.is_(None))).scalar_one())

    def waiting_for(self, conn: Connection, consumer: str) -> bool:
        """Whether ``consumer`` has anything to do: an unsequenced event, or a sequenced one
        after its cursor. Reads only, no lock (an idle consumer's cheap poll)."""
        if conn.execute(select(e.event_id).where(e.seq.is_(None)).limit(1)).first() is not None:
            return True
        position = conn.execute(select(c.position).where(c.consumer == consumer)).scalar()
        if position is None:
            return False
        return conn.execute(select(e.seq).where(e.seq > position).limit(1)).first() is not None

    def _lock_mark(self, conn: Connection) -> int:
        stmt = select(s.last_seq).where(s.id == SEQUENCER_ID)
        if self.for_update:
            stmt = stmt.with_for_update()
        mark = conn.execute(stmt).scalar()
        if mark is not None:
            return int(mark)
        # The row is created by the migration; rebuild it if it was deleted, from what the
        # outbox and the cursors show, so that no seq is handed out twice.
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(event_sequencer).values(
                        id=SEQUENCER_ID, last_seq=self._recovered_mark(conn)
                    )
                )
        except IntegrityError:
            pass  # a concurrent run created it; lock it below
        return int(conn.execute(stmt).scalar_one())

    def _recovered_mark(self, conn: Connection) -> int:
        top_event = conn.execute(select(func.max(e.seq))).scalar() or 0
        top_cursor = conn.execute(select(func.max(c.position))).scalar() or 0
        return max(int(top_event), int(top_cursor))

    # --- consumers ------------------------------------------------------------------------
    def after(self, conn: Connection, position: int, limit: int) -> list[Event]:
        """The next ``limit`` sequenced events after ``position``, in seq order."""
        stmt = select(*_EVENT_COLS).where(e.seq > position).order_by(e.seq).limit(limit)
        return [
            Event(
                seq=row.seq,
                kind=EventKind(row.kind),
                file_id=row.file_id,
                dir_id=row.dir_id,
                se=row.se,
                fields=unpack_fields(row.fields),
                created=row.created,
            )
            for row in conn.execute(stmt)
        ]

    def add_cursor(self, conn: Connection, consumer: str, position: int, now: datetime) -> bool:
        """Create a consumer's cursor at ``position``; False if it exists (left as it is)."""
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(event_cursors).values(
                        consumer=consumer, position=position, created=now, updated=now
                    )
                )
        except IntegrityError:
            return False
        return True

    def lock_cursor(self, conn: Connection, consumer: str) -> int | None:
        """A consumer's position, locked until the end of the transaction (None: unknown).

        A second replica of the consumer waits here, then reads the position the first one
        committed."""
        stmt = select(c.position).where(c.consumer == consumer)
        if self.for_update:
            stmt = stmt.with_for_update()
        position = conn.execute(stmt).scalar()
        return None if position is None else int(position)

    def advance_cursor(
        self, conn: Connection, consumer: str, old: int, new: int, now: datetime
    ) -> bool:
        """Move a cursor from ``old`` to ``new``; False if it was not at ``old`` any more."""
        stmt = (
            update(event_cursors)
            .where(c.consumer == consumer, c.position == old)
            .values(position=new, updated=now)
        )
        return conn.execute(stmt).rowcount == 1

    def delete_cursor(self, conn: Connection, consumer: str) -> bool:
        """Remove a consumer's cursor; False if there was none."""
        return conn.execute(delete(event_cursors).where(c.consumer == consumer)).rowcount == 1

    def cursors(self, conn: Connection) -> list[CursorRow]:
        """Every cursor, by consumer name."""
        rows = conn.execute(
            select(c.consumer, c.position, c.created, c.updated).order_by(c.consumer)
        )
        return [CursorRow(r.consumer, r.position, r.created, r.updated) for r in rows]

    # --- pruning --------------------------------------------------------------------------
    def prune(self, conn: Connection, upto: int, limit: int) -> int:
        """Delete at most ``limit`` sequenced events with ``seq <= upto``, oldest first;
        returns how many. Unsequenced events (seq NULL) never match.

        The ids are found by a plain read and deleted by primary key: a ranged DELETE on
        InnoDB may scan (and wait for) rows that writers have inserted but not committed,
        since READ COMMITTED only skips those for UPDATE (semi-consistent read), not DELETE.
        """
        ids = list(
            conn.execute(
                select(e.event_id)
                .where(e.seq.is_not(None), e.seq <= upto)
                .order_by(e.seq)
                .limit(limit)
            ).scalars()
        )
        deleted = 0
        for i in range(0, len(ids), IN_CHUNK):
            stmt = delete(catalog_events).where(e.event_id.in_(ids[i : i + IN_CHUNK]))
            deleted += int(conn.execute(stmt).rowcount)
        return deleted
