"""rooms left open, by the time their call finished

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-13 09:00:00+00:00

The sweep deletes the room of a call that finished within the last hour and still has one. Its
partial index (rooms not deleted) was ordered by creation, so each sweep read every room never
deleted in the platform's history to find the recent ones: a set that only grows (441 rows in
bench/scale.py's busy year, 0.3 ms of every sweep). Ordered by the finish time the sweep asks
about, it reads only the last hour's. Built CONCURRENTLY outside a transaction, as in 0006.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_call_requests_room_undeleted"
UNDELETED = sa.text("room_name IS NOT NULL AND room_deleted_at IS NULL")


def upgrade() -> None:
    _rebuild(sa.text("coalesce(ended_at, cancelled_at)"))


def downgrade() -> None:
    _rebuild("created_at")


def _rebuild(column: str | sa.TextClause) -> None:
    with op.get_context().autocommit_block():
        op.drop_index(NAME, table_name="call_requests", if_exists=True, postgresql_concurrently=True)
        op.create_index(NAME, "call_requests", [column], postgresql_where=UNDELETED, postgresql_concurrently=True)
