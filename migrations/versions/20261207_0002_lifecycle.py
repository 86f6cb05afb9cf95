"""call lifecycle: the sweep's lease column, the suspended reason, disputes in the ledger

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07 20:30:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The enums are VARCHARs with a CHECK constraint (app/models/_types.py): a new member is a new
# constraint. Every value the previous code writes stays allowed, so that code keeps working.
ENUMS = {
    ("call_requests", "cancelreason", "cancel_reason"): (
        ["expired", "seller_no_show", "buyer_no_show", "blocked", "payment_failed", "admin"],
        ["suspended"],
    ),
    ("transactions", "paymentstate", "payment_state"): (
        ["held", "captured", "voided", "refunded", "disputed"],
        ["charged_back"],
    ),
    ("ledger_entries", "ledgerkind", "kind"): (
        ["earning", "payout", "reversal"],
        ["dispute_hold", "dispute_release"],
    ),
}


def _check(table: str, name: str, column: str, values: list[str]) -> None:
    op.drop_constraint(op.f(f"ck_{table}_{name}"), table, type_="check")
    allowed = ", ".join(f"'{value}'" for value in values)
    op.create_check_constraint(op.f(f"ck_{table}_{name}"), table, sa.text(f"{column} IN ({allowed})"))


def upgrade() -> None:
    op.add_column("call_requests", sa.Column("sweep_lease_until", sa.DateTime(timezone=True), nullable=True))
    for (table, name, column), (old, new) in ENUMS.items():
        _check(table, name, column, old + new)


def downgrade() -> None:
    for (table, name, column), (old, _new) in ENUMS.items():
        _check(table, name, column, old)
    op.drop_column("call_requests", "sweep_lease_until")
