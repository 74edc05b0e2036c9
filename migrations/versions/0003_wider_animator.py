"""Room for `package.module:Class` animator names (32 characters was too short).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column(
            "animator", type_=sa.String(200), existing_type=sa.String(32), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column(
            "animator", type_=sa.String(32), existing_type=sa.String(200), existing_nullable=False
        )
