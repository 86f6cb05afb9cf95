"""the buyer's controls: a comment with a rating, and a buyer may cancel a pending request

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-11 09:00:00+00:00

Both changes only widen what may be stored: the code before this one never writes a comment (the
server default fills it) and never writes the new cancel reason.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REASONS = ["expired", "seller_no_show", "buyer_no_show", "blocked", "payment_failed", "admin", "suspended"]


def _reasons(values: list[str]) -> None:
    # Enums are VARCHARs with a CHECK constraint: a new member is a new constraint.
    op.drop_constraint(op.f("ck_call_requests_cancelreason"), "call_requests", type_="check")
    allowed = ", ".join(f"'{value}'" for value in values)
    op.create_check_constraint(
        op.f("ck_call_requests_cancelreason"), "call_requests", sa.text(f"cancel_reason IN ({allowed})")
    )


def upgrade() -> None:
    op.add_column("ratings", sa.Column("comment", sa.String(length=500), server_default="", nullable=False))
    _reasons([*REASONS, "buyer_cancelled"])


def downgrade() -> None:
    _reasons(REASONS)
    op.drop_column("ratings", "comment")
