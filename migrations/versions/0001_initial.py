"""Jobs and submissions.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("visitor_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("stage_detail", sa.String(64), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("motion", sa.String(200), nullable=True),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("animator", sa.String(32), nullable=False),
        sa.Column("model", sa.String(300), nullable=True),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("photo_key", sa.String(200), nullable=True),
        sa.Column("photo_width", sa.Integer(), nullable=False),
        sa.Column("photo_height", sa.Integer(), nullable=False),
        sa.Column("photo_bytes", sa.Integer(), nullable=False),
        sa.Column("quality", sa.JSON(), nullable=True),
        sa.Column("video_key", sa.String(200), nullable=True),
        sa.Column("poster_key", sa.String(200), nullable=True),
        sa.Column("video_info", sa.JSON(), nullable=True),
        sa.Column("stage_seconds", sa.JSON(), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("enqueued_at", TS, nullable=True),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("heartbeat_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_index("ix_jobs_visitor_id", "jobs", ["visitor_id"])
    op.create_index("ix_jobs_status", "jobs", ["status"])
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"])
    op.create_index("ix_jobs_expires_at", "jobs", ["expires_at"])
    op.create_index("ix_jobs_visitor_created", "jobs", ["visitor_id", "created_at"])

    op.create_table(
        "submissions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("visitor_id", sa.String(64), nullable=False),
        sa.Column("ip_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_submissions_visitor_id", "submissions", ["visitor_id"])
    op.create_index("ix_submissions_ip_hash", "submissions", ["ip_hash"])
    op.create_index("ix_submissions_created_at", "submissions", ["created_at"])


def downgrade() -> None:
    op.drop_table("submissions")
    op.drop_table("jobs")
