"""The Alembic migrations build exactly the schema of ctaprod.db.tables, on every engine."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from ctaprod.db import migrate
from ctaprod.db.engine import Database
from ctaprod.db.tables import metadata


@pytest.fixture
def empty_db(server_db_url: str, tmp_path: Path) -> Iterator[Database]:
    """A brand-new empty database on the engine under test."""
    if server_db_url.startswith("sqlite"):
        db = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
        yield db
        db.dispose()
        return
    base, _, _ = server_db_url.rpartition("/")
    name = f"ctaprod_mig_{uuid.uuid4().hex[:10]}"
    postgres = base.startswith("postgresql")
    admin = create_engine(
        f"{base}/{'postgres' if postgres else 'mysql'}", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    db = Database(f"{base}/{name}")
    try:
        yield db
    finally:
        db.dispose()
        with admin.connect() as conn:
            force = " WITH (FORCE)" if postgres else ""
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
        admin.dispose()


def _diff(db: Database) -> list[object]:
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, metadata))


def test_upgrade_head_on_an_empty_database_gives_tables_py(empty_db: Database) -> None:
    assert migrate.current(empty_db) is None
    migrate.upgrade(empty_db)
    assert migrate.current(empty_db) == migrate.head()
    assert _diff(empty_db) == []
    tables = set(inspect(empty_db.engine).get_table_names())
    assert tables == set(metadata.tables) | {"alembic_version"}


def test_upgrade_is_idempotent(empty_db: Database) -> None:
    migrate.upgrade(empty_db)
    migrate.upgrade(empty_db)
    assert migrate.current(empty_db) == migrate.head()
    assert _diff(empty_db) == []


def test_the_comparison_sees_a_drift(empty_db: Database) -> None:
    """The check above can fail: a schema that differs from tables.py shows up in the diff."""
    migrate.upgrade(empty_db)
    with empty_db.engine.begin() as conn:
        conn.execute(text("DROP TABLE agent_heartbeats"))
    diff = _diff(empty_db)
    assert diff
    assert any("agent_heartbeats" in repr(d) for d in diff)


def test_the_session_database_is_at_head(db_url: str) -> None:
    db = Database(db_url)
    try:
        assert migrate.current(db) == migrate.head()
        assert _diff(db) == []
    finally:
        db.dispose()


def test_single_head() -> None:
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(migrate._config()).get_heads()
    assert len(heads) == 1
