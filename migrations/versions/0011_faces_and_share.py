"""The faces a job moves (`faces`: the chosen faces' boxes, or null for every movable face) and the
job's share link (`share_token`: null while not shared; unique, so a token names one job).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("faces", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("share_token", sa.String(64), nullable=True))
        batch.create_index("uq_jobs_share_token", ["share_token"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("uq_jobs_share_token")
        batch.drop_column("share_token")
        batch.drop_column("faces")
