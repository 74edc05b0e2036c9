"""A succeeded job's run time in seconds (start to finish), so the queue's ETA is a mean the database
takes in the same statement as the rest of a status poll (app.core.waits), on SQLite and Postgres alike.

Jobs that succeeded before this revision get theirs from their start and finish times.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("run_s", sa.Float(), nullable=True))
    jobs = sa.table(
        "jobs",
        sa.column("id", sa.String),
        sa.column("status", sa.String),
        sa.column("started_at", sa.DateTime),
        sa.column("finished_at", sa.DateTime),
        sa.column("run_s", sa.Float),
    )
    bind = op.get_bind()
    done = bind.execute(
        sa.select(jobs.c.id, jobs.c.started_at, jobs.c.finished_at).where(
            jobs.c.status == "succeeded", jobs.c.started_at.is_not(None), jobs.c.finished_at.is_not(None)
        )
    ).all()
    for job_id, started, finished in done:  # jobs are kept for a day: a few thousand rows at most
        seconds = (finished - started).total_seconds()
        bind.execute(sa.update(jobs).where(jobs.c.id == job_id).values(run_s=seconds))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("run_s")
