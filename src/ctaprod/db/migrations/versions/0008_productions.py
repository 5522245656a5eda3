"""productions: definitions, steps, log; transformations.input_limit

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 12:58:56.332443
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ctaprod.db.types
from sqlalchemy.dialects import mysql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "productions",
        sa.Column(
            "prod_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.String(length=1024), server_default="", nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("owner_group", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "definition",
            sa.Text()
            .with_variant(mysql.LONGTEXT(), "mariadb")
            .with_variant(mysql.LONGTEXT(), "mysql"),
            nullable=False,
        ),
        sa.Column("created", ctaprod.db.types.UTCDateTime(), nullable=False),
        sa.Column("last_update", ctaprod.db.types.UTCDateTime(), nullable=False),
        sa.Column(
            "validation_status", sa.String(length=16), server_default="NotValidated", nullable=False
        ),
        sa.Column(
            "validation_summary",
            sa.Text()
            .with_variant(mysql.LONGTEXT(), "mariadb")
            .with_variant(mysql.LONGTEXT(), "mysql"),
            nullable=True,
        ),
        sa.Column("validated", ctaprod.db.types.UTCDateTime(), nullable=True),
        sa.Column("validated_by", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("prod_id", name=op.f("pk_productions")),
        sa.UniqueConstraint("name", name=op.f("uq_productions_name")),
    )
    with op.batch_alter_table("productions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_productions_status"), ["status"], unique=False)

    op.create_table(
        "production_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("prod_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("time", ctaprod.db.types.UTCDateTime(), nullable=False),
        sa.Column("author", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("message", sa.String(length=2048), server_default="", nullable=False),
        sa.ForeignKeyConstraint(
            ["prod_id"],
            ["productions.prod_id"],
            name=op.f("fk_production_log_prod_id_productions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_production_log")),
    )
    with op.batch_alter_table("production_log", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_production_log_prod_id_id"), ["prod_id", "id"], unique=False
        )

    op.create_table(
        "production_steps",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("prod_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("step_name", sa.String(length=128), server_default="", nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("trans_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("parents", sa.String(length=2048), server_default="[]", nullable=False),
        sa.ForeignKeyConstraint(
            ["prod_id"],
            ["productions.prod_id"],
            name=op.f("fk_production_steps_prod_id_productions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["trans_id"],
            ["transformations.trans_id"],
            name=op.f("fk_production_steps_trans_id_transformations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_production_steps")),
        sa.UniqueConstraint("prod_id", "step_id", name=op.f("uq_production_steps_prod_id_step_id")),
    )
    with op.batch_alter_table("production_steps", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_production_steps_trans_id"), ["trans_id"], unique=False
        )

    with op.batch_alter_table("transformations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("input_limit", sa.Integer(), nullable=True))


def downgrade() -> None:
    # Dropping a table drops its indexes; dropping them first fails on MariaDB, where an
    # index serves a foreign key.
    for table in ("production_steps", "production_log", "productions"):
        op.drop_table(table)
    with op.batch_alter_table("transformations", schema=None) as batch_op:
        batch_op.drop_column("input_limit")
