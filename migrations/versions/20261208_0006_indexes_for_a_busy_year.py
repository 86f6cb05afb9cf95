"""Indexes for a busy year: the queries bench/scale.py found reading whole tables

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 00:00:00+00:00

Built CONCURRENTLY, outside a transaction, so that running this against a live database with a
year of rows blocks no writes (the web and workers of the previous release keep running during
the release step). A failed concurrent build leaves an INVALID index behind; IF NOT EXISTS would
keep it, so each build drops a leftover of the same name first.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (name, table, columns, options)
INDEXES: list[tuple[str, str, list[str], dict[str, object]]] = [
    ("ix_call_requests_seller_status_created", "call_requests", ["seller_id", "status", "created_at"], {}),
    ("ix_call_requests_seller_created", "call_requests", ["seller_id", "created_at"], {}),
    (
        "ix_call_requests_room_undeleted",
        "call_requests",
        ["created_at"],
        {"postgresql_where": sa.text("room_name IS NOT NULL AND room_deleted_at IS NULL")},
    ),
    (
        "ix_call_requests_declined",
        "call_requests",
        ["declined_at"],
        {"postgresql_where": sa.text("status = 'DECLINED'")},
    ),
    (
        "ix_call_requests_cancelled",
        "call_requests",
        ["cancelled_at"],
        {"postgresql_where": sa.text("cancel_reason IS NOT NULL")},
    ),
    ("ix_ratings_seller_stars", "ratings", ["seller_id"], {"postgresql_include": ["stars", "id"]}),
    (
        "ix_transactions_disputed",
        "transactions",
        ["disputed_at"],
        {"postgresql_where": sa.text("disputed_at IS NOT NULL")},
    ),
    (
        "ix_transactions_open_disputes",
        "transactions",
        ["seller_id"],
        {"postgresql_where": sa.text("payment_state = 'disputed'")},
    ),
    (
        "ix_ledger_entries_seller_balance",
        "ledger_entries",
        ["seller_id", "currency"],
        {"postgresql_include": ["amount_cents"]},
    ),
    ("ix_payout_requests_status_created", "payout_requests", ["status", "created_at"], {}),
    ("ix_users_created", "users", ["created_at"], {}),
    ("ix_users_suspended", "users", ["role"], {"postgresql_where": sa.text("suspended_at IS NOT NULL")}),
    ("ix_event_log_created", "event_log", ["created_at"], {}),
]
# Replaced by the wider indexes above, which serve every query they served.
REPLACED: list[tuple[str, str, list[str]]] = [
    ("ix_call_requests_seller_status", "call_requests", ["seller_id", "status"]),
    ("ix_ratings_seller_id", "ratings", ["seller_id"]),
]


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, columns, options in INDEXES:
            op.drop_index(name, table_name=table, if_exists=True, postgresql_concurrently=True)
            op.create_index(name, table, columns, postgresql_concurrently=True, **options)
        for name, table, _columns in REPLACED:
            op.drop_index(name, table_name=table, if_exists=True, postgresql_concurrently=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, columns in REPLACED:
            op.create_index(name, table, columns, if_not_exists=True, postgresql_concurrently=True)
        for name, table, _columns, _options in reversed(INDEXES):
            op.drop_index(name, table_name=table, if_exists=True, postgresql_concurrently=True)
