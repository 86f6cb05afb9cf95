"""photo deletions: the durable to-do of a deleted profile's stored photos

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 00:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "photo_deletions",
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("profile_id", name=op.f("pk_photo_deletions")),
    )
    op.create_index(
        "ix_photo_deletions_due",
        "photo_deletions",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("done_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_photo_deletions_due", table_name="photo_deletions", postgresql_where=sa.text("done_at IS NULL"))
    op.drop_table("photo_deletions")
