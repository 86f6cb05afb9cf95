"""scheduled calls: sellers' availability, the buyer's proposed times, the accepted start, one
reschedule, reminders, the hold's capture_before, the buyer_cancelled reason and withdrawn emails

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 09:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Enums are VARCHARs with a CHECK constraint: a new member is a new constraint, and every value
# the previous code writes stays allowed.
ENUMS = {
    ("call_requests", "cancelreason", "cancel_reason"): (
        ["expired", "seller_no_show", "buyer_no_show", "blocked", "payment_failed", "admin", "suspended"],
        ["buyer_cancelled"],
    ),
    ("email_outbox", "emailstatus", "status"): (["pending", "sent", "failed"], ["withdrawn"]),
}

TIMESTAMPTZ = sa.DateTime(timezone=True)


def _check(table: str, name: str, column: str, values: list[str]) -> None:
    op.drop_constraint(op.f(f"ck_{table}_{name}"), table, type_="check")
    allowed = ", ".join(f"'{value}'" for value in values)
    op.create_check_constraint(op.f(f"ck_{table}_{name}"), table, sa.text(f"{column} IN ({allowed})"))


def _proposals() -> sa.Column[object]:
    return sa.Column("proposed_starts", postgresql.ARRAY(TIMESTAMPTZ), server_default="{}", nullable=False)


def upgrade() -> None:
    op.create_table(
        "seller_availability",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("seller_id", sa.Uuid(), nullable=False),
        sa.Column("time_zone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.Column("weekly", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
        sa.Column("available_now_until", TIMESTAMPTZ, nullable=True),
        sa.Column("created_at", TIMESTAMPTZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", TIMESTAMPTZ, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["seller_id"], ["users.id"], name=op.f("fk_seller_availability_seller_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seller_availability")),
        sa.UniqueConstraint("seller_id", name=op.f("uq_seller_availability_seller_id")),
    )
    op.add_column("checkouts", _proposals())
    op.add_column("checkouts", sa.Column("buyer_time_zone", sa.String(length=64), nullable=True))
    op.add_column("transactions", sa.Column("capture_before", TIMESTAMPTZ, nullable=True))
    op.add_column("call_requests", _proposals())
    op.add_column("call_requests", sa.Column("buyer_time_zone", sa.String(length=64), nullable=True))
    for column in ("scheduled_start", "join_opens_at", "next_reminder_at", "reschedule_start"):
        op.add_column("call_requests", sa.Column(column, TIMESTAMPTZ, nullable=True))
    op.add_column("call_requests", sa.Column("schedule_sequence", sa.Integer(), server_default="0", nullable=False))
    op.add_column("call_requests", sa.Column("reschedule_by", sa.String(length=10), nullable=True))
    op.add_column("call_requests", sa.Column("reschedule_asked_at", TIMESTAMPTZ, nullable=True))
    op.add_column("call_requests", sa.Column("reschedule_answered_at", TIMESTAMPTZ, nullable=True))
    # Every call accepted so far was for right away: its room opened at the accept.
    op.execute("UPDATE call_requests SET join_opens_at = accepted_at WHERE accepted_at IS NOT NULL")
    op.create_check_constraint(
        op.f("ck_call_requests_at_most_three_proposals"), "call_requests", sa.text("cardinality(proposed_starts) <= 3")
    )
    op.create_check_constraint(
        op.f("ck_call_requests_reschedule_party"), "call_requests", sa.text("reschedule_by IN ('buyer', 'seller')")
    )
    op.create_index(
        "ix_call_requests_reminders_due",
        "call_requests",
        ["next_reminder_at"],
        postgresql_where=sa.text("next_reminder_at IS NOT NULL"),
    )
    for (table, name, column), (old, new) in ENUMS.items():
        _check(table, name, column, old + new)


def downgrade() -> None:
    for (table, name, column), (old, _new) in ENUMS.items():
        _check(table, name, column, old)
    op.drop_index("ix_call_requests_reminders_due", table_name="call_requests")
    op.drop_constraint(op.f("ck_call_requests_reschedule_party"), "call_requests", type_="check")
    op.drop_constraint(op.f("ck_call_requests_at_most_three_proposals"), "call_requests", type_="check")
    for column in (
        "reschedule_answered_at",
        "reschedule_asked_at",
        "reschedule_by",
        "schedule_sequence",
        "reschedule_start",
        "next_reminder_at",
        "join_opens_at",
        "scheduled_start",
        "buyer_time_zone",
        "proposed_starts",
    ):
        op.drop_column("call_requests", column)
    op.drop_column("transactions", "capture_before")
    op.drop_column("checkouts", "buyer_time_zone")
    op.drop_column("checkouts", "proposed_starts")
    op.drop_table("seller_availability")
