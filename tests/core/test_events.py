"""Event kinds and field lists as stored in the outbox."""

from __future__ import annotations

from datetime import UTC, datetime

from ctaprod.core.events import Event, EventKind, pack_fields, unpack_fields


def test_field_lists_round_trip_sorted_without_repeats() -> None:
    assert pack_fields([]) is None
    assert unpack_fields(None) == ()
    assert pack_fields(["site", "run", "site"]) == "run,site"
    assert unpack_fields(pack_fields(["site", "run"])) == ("run", "site")


def _event(kind: EventKind, fields: tuple[str, ...] = ()) -> Event:
    return Event(1, kind, 1, 1, None, fields, datetime(2026, 1, 1, tzinfo=UTC))


def test_touches_only_for_metadata_events_with_their_fields() -> None:
    assert _event(EventKind.FILE_META, ("run",)).touches(["run", "site"])
    assert not _event(EventKind.DIR_META, ("nsb",)).touches(["run", "site"])
    assert _event(EventKind.DIR_META).touches([])  # no list: may touch anything
    assert _event(EventKind.FILE_REGISTERED).touches([])
    assert _event(EventKind.REPLICA_REMOVED).touches(["run"])
