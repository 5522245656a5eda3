"""job attempts own the catalog files they wrote

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 04:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("catalog_files", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True)
        )
        batch_op.add_column(sa.Column("attempt", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_catalog_files_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("catalog_files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_catalog_files_job_id"))
        batch_op.drop_column("attempt")
        batch_op.drop_column("job_id")
