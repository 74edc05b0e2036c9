"""A job's clip length (duration_s, 3 to 10 s) and size (resolution: hd or 4k), as the visitor asked.

Jobs from before this revision were all 4 s HD clips, or a recording's own length: a recorded job gets
its samples' count / 24, the rest 4.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

CURVES_FPS = 24  # models.motion_curves, as it stood at this revision


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("duration_s", sa.Float(), nullable=False, server_default="4"))
        batch.add_column(sa.Column("resolution", sa.String(8), nullable=False, server_default="hd"))
    jobs = sa.table("jobs", sa.column("id", sa.String), sa.column("motion_curves", sa.JSON))
    bind = op.get_bind()
    recorded = sa.select(jobs.c.id, jobs.c.motion_curves).where(jobs.c.motion_curves.is_not(None))
    for job_id, curves in bind.execute(recorded).all():  # jobs are kept a day: a few thousand rows at most
        channels = (curves or {}).get("channels") or {}
        samples = len(next(iter(channels.values()), []))
        if samples:
            bind.execute(
                sa.text("UPDATE jobs SET duration_s = :s WHERE id = :id"),
                {"s": round(samples / CURVES_FPS, 3), "id": job_id},
            )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("resolution")
        batch.drop_column("duration_s")
