"""a buyer's rating may carry a comment for the seller

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-11 09:00:00+00:00

A column with a server default: the code before this one never writes it, and its inserts get
the empty comment. (The buyer_cancelled reason the buyer's cancel of a pending request uses came
with 0005, for cancelling a scheduled call.)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("ratings", sa.Column("comment", sa.String(length=500), server_default="", nullable=False))


def downgrade() -> None:
    op.drop_column("ratings", "comment")
