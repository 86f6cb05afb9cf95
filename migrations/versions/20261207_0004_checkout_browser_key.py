"""checkouts.browser_key_hash: the buyer's join link only for the browser that paid

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 20:30:00+00:00

A nullable column with no default: the code before this one neither reads nor writes it, and a
checkout it created simply never shows a join link on the status page (the email carries it).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("checkouts", sa.Column("browser_key_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("checkouts", "browser_key_hash")
