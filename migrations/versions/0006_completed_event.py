"""When a job's `completed` webhook was handed to the broker, so the reconciler can re-send one that
never was (the broker was down as the job ended, or its worker died right after the commit).

Jobs that ended before this revision count as announced: nothing old is sent again.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

FINAL = ("succeeded", "failed", "canceled")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("completed_event_at", sa.DateTime(timezone=True), nullable=True))
    jobs = sa.table(
        "jobs",
        sa.column("status", sa.String),
        sa.column("finished_at", sa.DateTime(timezone=True)),
        sa.column("completed_event_at", sa.DateTime(timezone=True)),
    )
    op.execute(jobs.update().where(jobs.c.status.in_(FINAL)).values(completed_event_at=jobs.c.finished_at))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("completed_event_at")
