"""Consuming the catalog event outbox: sequencing, durable cursors, pruning (ADR 0005).

A consumer (e.g. the transformation system's attachment agent) is a name with a cursor: the
last ``seq`` it applied. :func:`consume` hands the events after the cursor to a handler in
one write transaction and moves the cursor in that same transaction, so the handler's
database effects and the cursor commit together or not at all: after a crash (even
SIGKILL) the consumer resumes exactly where its last commit left it, and no event is applied
twice or lost. Replicas of one consumer serialize on the cursor row.

Events become readable once :func:`sequence` has numbered them; it runs in its own short
transaction (the lock it holds is shared by all writers' events), by default at the start
of each :func:`consume`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from ctaprod.core.errors import Conflict, InvalidInput, NotFound
from ctaprod.core.events import Event
from ctaprod.db.tables import NAME
from ctaprod.logic.context import Context

SEQUENCE_BATCH = 10_000
PRUNE_BATCH = 10_000

Handler = Callable[[Connection, Sequence[Event]], None]


@dataclass(frozen=True)
class ConsumerState:
    """A registered consumer: its position, and how far the outbox has been sequenced."""

    consumer: str
    position: int
    last_seq: int
    created: datetime
    updated: datetime

    @property
    def behind(self) -> int:
        """Upper bound of the sequenced events it has not applied (seqs have gaps)."""
        return max(0, self.last_seq - self.position)


def _check_name(consumer: str) -> str:
    if not consumer or len(consumer) > NAME or consumer.strip() != consumer:
        raise InvalidInput(
            f"invalid event consumer name {consumer!r}: 1 to {NAME} characters, "
            "no surrounding spaces", consumer=consumer,
        )  # fmt: skip
    return consumer


def sequence(ctx: Context, *, batch: int = SEQUENCE_BATCH) -> int:
    """Give a seq to every committed unsequenced event (``batch`` per transaction); returns
    how many. Safe to run from any number of processes at once: runs serialize on the lock."""
    total = 0
    while True:
        with ctx.db.write() as conn:
            done = ctx.events.sequence(conn, batch)
        total += done
        if done < batch:
            return total


def register_consumer(ctx: Context, consumer: str, *, from_start: bool = False) -> int:
    """Create a consumer's cursor and return its position; an existing one is kept as is.

    By default the cursor starts at the current end of the sequenced outbox: the consumer
    gets every event sequenced from now on, which includes every event committed after this
    call (and possibly some just before). A consumer that must also cover the existing
    catalog registers first, then scans it in bulk: a change made during the scan then
    reaches it as an event too, so it must apply events idempotently. ``from_start``
    starts at 0: every event still in the outbox (pruning may have removed older ones).
    """
    _check_name(consumer)
    with ctx.db.write() as conn:
        position = 0 if from_start else ctx.events.last_seq(conn)
        if ctx.events.add_cursor(conn, consumer, position, ctx.clock()):
            return position
        current = ctx.events.lock_cursor(conn, consumer)
        assert current is not None  # it exists: add_cursor said so in this transaction
        return current


def unregister_consumer(ctx: Context, consumer: str) -> None:
    """Forget a consumer's cursor, so that pruning no longer waits for it."""
    with ctx.db.write() as conn:
        if not ctx.events.delete_cursor(conn, consumer):
            raise NotFound(f"no event consumer {consumer!r}", consumer=consumer)


def consumers(ctx: Context) -> list[ConsumerState]:
    """Every registered consumer with its position."""
    with ctx.db.read() as conn:
        last = ctx.events.last_seq(conn)
        return [
            ConsumerState(r.consumer, r.position, last, r.created, r.updated)
            for r in ctx.events.cursors(conn)
        ]


def consume(
    ctx: Context,
    consumer: str,
    handler: Handler,
    *,
    limit: int = 1000,
    sequence_first: bool = True,
) -> int:
    """Apply the next (at most ``limit``) events after ``consumer``'s cursor with
    ``handler(conn, events)`` and advance the cursor, in one write transaction; returns how
    many events were applied (0: none waiting).

    ``handler`` must do its work on ``conn`` and not commit; if it raises, nothing it did is
    kept, the cursor stays, and the exception propagates: the same events come again on
    the next call. Only the first ``limit`` events are handed over; call again while the
    result equals ``limit``. ``sequence_first`` runs :func:`sequence` before (in its own
    transaction) so that events committed by now are included.
    """
    _check_name(consumer)
    if limit < 1:
        raise InvalidInput(f"limit must be at least 1, not {limit}")
    if sequence_first:
        sequence(ctx)
    with ctx.db.write() as conn:
        # Locked until the commit: a replica of this consumer waits here and then reads the
        # position this call committed, so it never gets the same events.
        position = ctx.events.lock_cursor(conn, consumer)
        if position is None:
            raise NotFound(f"no event consumer {consumer!r}: register it first", consumer=consumer)
        events = ctx.events.after(conn, position, limit)
        if not events:
            return 0
        handler(conn, events)
        if not ctx.events.advance_cursor(conn, consumer, position, events[-1].seq, ctx.clock()):
            # Cannot happen while the row lock holds; refuse rather than apply twice.
            raise Conflict(
                f"event consumer {consumer!r} moved from {position} concurrently", consumer=consumer
            )
        return len(events)


def prune(ctx: Context, *, batch: int = PRUNE_BATCH, max_batches: int | None = None) -> int:
    """Delete the events every registered consumer has applied, ``batch`` per transaction
    (at most ``max_batches``); returns how many. Without any consumer nothing is deleted
    (a consumer registered ``from_start`` may still want them); unsequenced events are
    never deleted."""
    if batch < 1:
        raise InvalidInput(f"batch must be at least 1, not {batch}")
    total, runs = 0, 0
    while max_batches is None or runs < max_batches:
        with ctx.db.write() as conn:
            positions = [r.position for r in ctx.events.cursors(conn)]
            if not positions:
                return total
            done = ctx.events.prune(conn, min(positions), batch)
        total += done
        runs += 1
        if done < batch:
            break
    return total
