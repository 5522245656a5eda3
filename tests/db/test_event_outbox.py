"""Migration 0006 on every engine: events written before it keep their meaning (kinds
renamed to EventKind values), wait for the sequencer (seq NULL), and are consumed once."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import text

from ctaprod.core.events import EventKind
from ctaprod.db import migrate
from ctaprod.db.engine import Database
from ctaprod.db.events import EventDB
from ctaprod.db.tables import catalog_events
from tests.db.test_migrations import empty_db  # noqa: F401 - the fixture

OLD = ["file", "remove", "meta", "dirmeta"]


def _downgrade(db: Database, revision: str) -> None:
    cfg = migrate._config()
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def test_events_written_before_0006_are_renamed_and_sequenced(empty_db: Database) -> None:  # noqa: F811
    migrate.upgrade(empty_db, "0005")
    created = datetime(2026, 12, 1, tzinfo=UTC).replace(tzinfo=None)
    with empty_db.engine.begin() as conn:
        for i, kind in enumerate(OLD, start=1):
            conn.execute(
                text(
                    "INSERT INTO catalog_events (kind, file_id, dir_id, created) "
                    "VALUES (:k, :f, :d, :c)"
                ),
                {"k": kind, "f": None if kind == "dirmeta" else i, "d": 7, "c": created},
            )
    migrate.upgrade(empty_db)
    events = EventDB(for_update=not empty_db.is_sqlite)
    with empty_db.write() as conn:
        assert events.unsequenced(conn) == 4
        assert events.last_seq(conn) == 0
        assert events.sequence(conn, 100) == 4
    with empty_db.read() as conn:
        got = events.after(conn, 0, 100)
    assert [ev.kind for ev in got] == [
        EventKind.FILE_REGISTERED,
        EventKind.FILE_REMOVED,
        EventKind.FILE_META,
        EventKind.DIR_META,
    ]
    assert [ev.seq for ev in got] == [1, 2, 3, 4]
    assert [ev.file_id for ev in got] == [1, 2, 3, None]

    _downgrade(empty_db, "0005")
    with empty_db.engine.connect() as conn:
        kinds = conn.execute(text("SELECT kind FROM catalog_events ORDER BY event_id")).scalars()
        assert list(kinds) == OLD
    migrate.upgrade(empty_db)
    assert migrate.current(empty_db) == migrate.head()


def test_every_kind_fits_its_column() -> None:
    width = catalog_events.c.kind.type.length
    assert width is not None
    assert max(len(k.value) for k in EventKind) <= width
