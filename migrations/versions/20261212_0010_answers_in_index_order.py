"""a busy seller's latest answers and ratings in index order

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-12 09:00:00+00:00

The paywall's response-time hint reads a seller's latest answered requests, and the dashboard
their newest ratings. The planner expects a seller to have the platform's average handful of
rows, so for a seller with thousands it fetched them all and sorted them (bench/scale.py: 4 ms
of a 5 ms paywall, 7 ms for five ratings). Each new index has the old one's leading column with
the order and the values the query needs, so it walks a seller's rows newest first without
touching the table and stops after the few it needs; it serves every query the old one served,
which goes. Built CONCURRENTLY outside a transaction, as in 0006.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Index = tuple[str, list[str], list[str]]  # name, columns, included columns

# (table, the old index, the one that replaces it)
REPLACEMENTS: list[tuple[str, Index, Index]] = [
    (
        "call_requests",
        ("ix_call_requests_seller_created", ["seller_id", "created_at"], []),
        ("ix_call_requests_seller_created_answered", ["seller_id", "created_at"], ["accepted_at", "declined_at"]),
    ),
    (
        "ratings",
        ("ix_ratings_seller_stars", ["seller_id"], ["stars", "id"]),
        ("ix_ratings_seller_created", ["seller_id", "created_at"], ["stars", "id"]),
    ),
]


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for table, old, new in REPLACEMENTS:
            _build(table, *new)
            op.drop_index(old[0], table_name=table, if_exists=True, postgresql_concurrently=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for table, old, new in REPLACEMENTS:
            _build(table, *old)
            op.drop_index(new[0], table_name=table, if_exists=True, postgresql_concurrently=True)


def _build(table: str, name: str, columns: list[str], include: list[str]) -> None:
    # A failed concurrent build leaves an INVALID index behind: drop it before building.
    op.drop_index(name, table_name=table, if_exists=True, postgresql_concurrently=True)
    op.create_index(name, table, columns, postgresql_include=include, postgresql_concurrently=True)
