"""Values too long or too big for their column are refused before the database sees them,
with the same InvalidInput on SQLite, MariaDB and PostgreSQL (db/limits.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, update

from ctaprod.core.errors import InvalidInput
from ctaprod.db.engine import Database
from ctaprod.db.tables import groups, sites, users


@pytest.fixture
def db(db_url: str):  # type: ignore[no-untyped-def]
    database = Database(db_url)
    yield database
    database.dispose()


NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_string_longer_than_its_column_is_refused_on_insert(db: Database) -> None:
    too_long = [{"name": "S" * 129, "status": "Banned", "updated_at": NOW}]
    with (
        pytest.raises(InvalidInput, match=r"name: at most 128 characters, got 129"),
        db.write() as conn,
    ):
        conn.execute(insert(sites), too_long)
    with db.read() as conn:
        assert conn.execute(sites.select()).all() == []


def test_values_and_bulk_rows_are_checked_too(db: Database) -> None:
    with db.write() as conn:
        conn.execute(insert(users).values(name="bob", email="", created=NOW))
    with pytest.raises(InvalidInput, match="email: at most 255"), db.write() as conn:
        conn.execute(update(users).where(users.c.name == "bob").values(email="e" * 256))
    with pytest.raises(InvalidInput, match="name: at most 64"), db.write() as conn:
        conn.execute(
            insert(users),
            [
                {"name": "ok", "email": "", "created": NOW},
                {"name": "n" * 65, "email": "", "created": NOW},
            ],
        )
    with db.read() as conn:
        assert [r.name for r in conn.execute(users.select())] == ["bob"]


def test_an_integer_out_of_its_column_range_is_refused(db: Database) -> None:
    from ctaprod.db.tables import jobs

    with pytest.raises(InvalidInput, match=r"priority: .* is out of range"), db.write() as conn:
        conn.execute(update(jobs).where(jobs.c.job_id == 1).values(priority=2**40))


def test_the_limits_match_the_columns_exactly(db: Database) -> None:
    with db.write() as conn:
        conn.execute(insert(sites), [{"name": "S" * 128, "status": "Banned", "updated_at": NOW}])
        conn.execute(insert(groups), [{"name": "g" * 64, "properties": "", "share": 1.0}])
    with db.read() as conn:
        assert conn.execute(sites.select()).one().name == "S" * 128
