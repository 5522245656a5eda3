"""per-queue counters: task_queues.waiting and task_queues.max_priority

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-02 04:20:00

The matcher's snapshot used to group every waiting job (tq_jobs) by queue; the counters are
now kept by TaskQueueDB on enqueue, dequeue and claim. They start from the rows already there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_queues", schema=None) as batch_op:
        batch_op.add_column(sa.Column("waiting", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column("max_priority", sa.Integer(), server_default="0", nullable=False)
        )
    # Correlated subqueries: each is one probe of the (tq_id, priority, job_id) index.
    op.execute(
        "UPDATE task_queues SET "
        "waiting = (SELECT count(*) FROM tq_jobs WHERE tq_jobs.tq_id = task_queues.tq_id), "
        "max_priority = COALESCE((SELECT max(priority) FROM tq_jobs "
        "WHERE tq_jobs.tq_id = task_queues.tq_id), 0)"
    )


def downgrade() -> None:
    with op.batch_alter_table("task_queues", schema=None) as batch_op:
        batch_op.drop_column("max_priority")
        batch_op.drop_column("waiting")
