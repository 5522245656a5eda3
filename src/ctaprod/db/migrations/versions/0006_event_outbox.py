"""event outbox: late sequencing of catalog events, event kinds and changed fields, cursors

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 08:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ctaprod.db.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# The kinds before the EventKind enum, and their names now (ADR 0005).
_KINDS = {"file": "file_registered", "remove": "file_removed", "meta": "file_meta",
          "dirmeta": "dir_meta"}  # fmt: skip


def upgrade() -> None:
    with op.batch_alter_table("catalog_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("se", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("fields", sa.Text(), nullable=True))
        batch_op.create_index(batch_op.f("ix_catalog_events_seq"), ["seq"], unique=False)
    events = sa.table("catalog_events", sa.column("kind", sa.String(16)))
    for old, new in _KINDS.items():
        op.execute(events.update().where(events.c.kind == old).values(kind=new))
    sequencer = op.create_table(
        "event_sequencer",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_sequencer")),
    )
    assert sequencer is not None
    # The lock row; existing events are unsequenced and get their seq from the first run.
    op.bulk_insert(sequencer, [{"id": 1, "last_seq": 0}])
    op.create_table(
        "event_cursors",
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("created", ctaprod.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated", ctaprod.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", name=op.f("pk_event_cursors")),
    )


def downgrade() -> None:
    op.drop_table("event_cursors")
    op.drop_table("event_sequencer")
    events = sa.table("catalog_events", sa.column("kind", sa.String(16)))
    for old, new in _KINDS.items():
        op.execute(events.update().where(events.c.kind == new).values(kind=old))
    with op.batch_alter_table("catalog_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_catalog_events_seq"))
        batch_op.drop_column("fields")
        batch_op.drop_column("se")
        batch_op.drop_column("seq")
