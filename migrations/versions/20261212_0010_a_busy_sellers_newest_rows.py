"""a busy seller's newest rows in index order

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-12 09:00:00+00:00

The paywall's response-time hint reads a seller's latest answered requests; the dashboard their
newest ratings and their latest finished calls. The planner expects a seller to have the
platform's average handful of rows, so for a seller with thousands it fetched them all and sorted
them (bench/scale.py's busy year: 4 ms of a 5 ms paywall, 7 ms for five ratings, 18 ms for five
recent calls). Each index here leads with the seller and goes on with the order the query asks
for (and, where it can, the values it reads), so the query walks the seller's rows newest first
and stops after the few it shows. The two replaced indexes had the same leading columns and serve
nothing the new ones do not. Built CONCURRENTLY outside a transaction, as in 0006.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Index = tuple[str, list[str | sa.TextClause], list[str]]  # name, columns, included columns

FINISHED_AT = sa.text("coalesce(ended_at, cancelled_at, declined_at)")

# (table, the index replaced or None, the new index)
CHANGES: list[tuple[str, Index | None, Index]] = [
    (
        "call_requests",
        ("ix_call_requests_seller_created", ["seller_id", "created_at"], []),
        ("ix_call_requests_seller_created_answered", ["seller_id", "created_at"], ["accepted_at", "declined_at"]),
    ),
    ("call_requests", None, ("ix_call_requests_seller_finished", ["seller_id", FINISHED_AT], [])),
    (
        "ratings",
        ("ix_ratings_seller_stars", ["seller_id"], ["stars", "id"]),
        ("ix_ratings_seller_created", ["seller_id", "created_at"], ["stars", "id"]),
    ),
]


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for table, old, new in CHANGES:
            _build(table, *new)
            if old is not None:
                _drop(table, old[0])


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for table, old, new in reversed(CHANGES):
            if old is not None:
                _build(table, *old)
            _drop(table, new[0])


def _build(table: str, name: str, columns: list[str | sa.TextClause], include: list[str]) -> None:
    _drop(table, name)  # a failed concurrent build leaves an INVALID index behind
    op.create_index(name, table, columns, postgresql_include=include, postgresql_concurrently=True)


def _drop(table: str, name: str) -> None:
    op.drop_index(name, table_name=table, if_exists=True, postgresql_concurrently=True)
