"""Alembic environment: runs on the connection handed in by ctaprod.db.migrate."""

from __future__ import annotations

from alembic import context

from ctaprod.db.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through ctaprod.db.migrate.upgrade()")
context.configure(
    connection=connection,
    target_metadata=metadata,
    compare_type=True,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
