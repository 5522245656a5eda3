"""leases and liveness: request leases, persisted lost-pilot timer, agent and server liveness

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ctaprod.db.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_until", ctaprod.db.types.UTCDateTime(), nullable=True))
    with op.batch_alter_table("pilots", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("unknown_since", ctaprod.db.types.UTCDateTime(), nullable=True)
        )
    with op.batch_alter_table("agent_heartbeats", schema=None) as batch_op:
        batch_op.add_column(sa.Column("alive_at", ctaprod.db.types.UTCDateTime(), nullable=True))
    op.create_table(
        "service_liveness",
        sa.Column("instance", sa.String(length=255), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("up_since", ctaprod.db.types.UTCDateTime(), nullable=False),
        sa.Column("last_beat", ctaprod.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("instance", name=op.f("pk_service_liveness")),
    )
    with op.batch_alter_table("service_liveness", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_service_liveness_service_last_beat"),
            ["service", "last_beat"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("service_liveness", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_liveness_service_last_beat"))
    op.drop_table("service_liveness")
    with op.batch_alter_table("agent_heartbeats", schema=None) as batch_op:
        batch_op.drop_column("alive_at")
    with op.batch_alter_table("pilots", schema=None) as batch_op:
        batch_op.drop_column("unknown_since")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
