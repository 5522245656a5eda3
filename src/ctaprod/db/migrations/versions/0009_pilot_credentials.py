"""pilot credentials: pilots.registered_at (single-use registration), registration_refused

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 16:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ctaprod.db.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pilots", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("registered_at", ctaprod.db.types.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(sa.Column("registration_refused", sa.String(length=255), nullable=True))
    # Pilots past their start have registered (or never will): no registration is left to them.
    pilots = sa.table(
        "pilots",
        sa.column("status", sa.String()),
        sa.column("last_update", ctaprod.db.types.UTCDateTime()),
        sa.column("registered_at", ctaprod.db.types.UTCDateTime()),
    )
    op.execute(
        pilots.update()
        .where(pilots.c.status.notin_(["Submitted", "Waiting"]))
        .values(registered_at=pilots.c.last_update)
    )


def downgrade() -> None:
    with op.batch_alter_table("pilots", schema=None) as batch_op:
        batch_op.drop_column("registration_refused")
        batch_op.drop_column("registered_at")
