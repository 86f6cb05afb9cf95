"""The mechanics and shapes of ``tests/scale_seed.py``: COPY in chunks, dropping and rebuilding a
table's keys and indexes around a bulk load, timestamps as COPY text, the outcomes of a finished
call, the plans of a call and a payout, and each table's COPY columns."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg


def uuid4_from(rng: random.Random) -> uuid.UUID:
    """A version-4 UUID drawn from ``rng``, so a seed is the same from run to run."""
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def copy_rows(conn: psycopg.Connection[Any], table: str, columns: tuple[str, ...], rows: Iterator[str]) -> int:
    count = 0
    with conn.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        chunk: list[str] = []
        for line in rows:
            chunk.append(line)
            if len(chunk) == 5000:
                copy.write("".join(chunk))
                count += len(chunk)
                chunk.clear()
        copy.write("".join(chunk))
        count += len(chunk)
    return count


def drop_indexes(conn: psycopg.Connection[Any], tables: tuple[str, ...]) -> list[str]:
    """Drop the seeded tables' foreign keys, unique and primary keys and indexes; return the
    statements that put them back, in an order that works (keys before the foreign keys)."""
    names = list(tables)
    # Foreign keys from other tables too: a primary key cannot go while one points at it.
    constraints = conn.execute(
        "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid), c.contype FROM pg_constraint c"
        " WHERE (c.conrelid::regclass::text = ANY(%s) AND c.contype IN ('f', 'u', 'p'))"
        " OR (c.confrelid::regclass::text = ANY(%s) AND c.contype = 'f')",
        (names, names),
    ).fetchall()
    indexes = conn.execute(
        "SELECT indexdef, schemaname || '.' || indexname FROM pg_indexes WHERE tablename = ANY(%s)"
        " AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE contype IN ('u', 'p'))",
        (names,),
    ).fetchall()
    order = {"f": 0, "u": 1, "p": 2}
    for table, name, _definition, _kind in sorted(constraints, key=lambda row: order[row[3]]):
        conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for _definition, name in indexes:
        conn.execute(f"DROP INDEX {name}")
    rebuild = [f'ALTER TABLE {t} ADD CONSTRAINT "{n}" {d}' for t, n, d, k in constraints if k in "pu"]
    rebuild += [definition for definition, _name in indexes]
    rebuild += [f'ALTER TABLE {t} ADD CONSTRAINT "{n}" {d}' for t, n, d, k in constraints if k == "f"]
    return rebuild


class Clock:
    """Timestamps as COPY text, cheaply: minute strings are made once and seconds appended."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.epoch = int(now.timestamp())
        self._minutes: dict[int, str] = {}

    def at(self, epoch: float) -> str:
        seconds = int(epoch)
        minute = seconds - seconds % 60
        prefix = self._minutes.get(minute)
        if prefix is None:
            prefix = datetime.fromtimestamp(minute, UTC).strftime("%Y-%m-%d %H:%M")
            self._minutes[minute] = prefix
        return f"{prefix}:{seconds % 60:02d}+00"

    def ago(self, seconds: float) -> str:
        return self.at(self.epoch - seconds)


# Outcomes of finished calls, with their share: (status, cancel reason, payment state, earns).
OUTCOMES = (
    (0.80, "COMPLETED", None, "captured", True),
    (0.08, "DECLINED", None, "voided", False),
    (0.06, "CANCELLED", "expired", "voided", False),
    (0.02, "CANCELLED", "buyer_no_show", "captured", True),
    (0.02, "CANCELLED", "seller_no_show", "refunded", False),
    (0.01, "CANCELLED", "payment_failed", "voided", False),
    (0.01, "CANCELLED", "blocked", "voided", False),
)
TEMPLATES = ("request_created_seller", "request_created_buyer", "call_ready_buyer", "request_declined_buyer")
N = "\\N"


@dataclass(frozen=True)
class CallPlan:
    n: int
    seller: uuid.UUID
    id: uuid.UUID
    transaction: uuid.UUID
    age: float  # seconds before now that it was created
    outcome: tuple[Any, ...] | str

    @property
    def status(self) -> str:
        return self.outcome if isinstance(self.outcome, str) else self.outcome[0]

    @property
    def reason(self) -> str | None:
        return None if isinstance(self.outcome, str) else self.outcome[1]

    @property
    def payment(self) -> str:
        return "held" if isinstance(self.outcome, str) else self.outcome[2]

    @property
    def earns(self) -> bool:
        return not isinstance(self.outcome, str) and bool(self.outcome[3])


@dataclass(frozen=True)
class PayoutPlan:
    id: uuid.UUID
    seller: uuid.UUID
    age: float
    status: str


USER_COLUMNS = ("id", "email", "password_hash", "role", "email_verified_at", "created_at", "updated_at")
PROFILE_COLUMNS = (
    "id",
    "user_id",
    "slug",
    "display_name",
    "bio",
    "price_cents",
    "currency",
    "created_at",
    "updated_at",
)
CHECKOUT_COLUMNS = (
    *("id", "seller_id", "buyer_email", "note", "amount_cents", "currency", "submission_key"),
    *("stripe_checkout_session_id", "status", "expires_at", "created_at"),
)
TRANSACTION_COLUMNS = (
    *("id", "seller_id", "buyer_email", "stripe_checkout_session_id", "stripe_payment_intent_id"),
    *("gross_cents", "platform_fee_cents", "net_cents", "currency", "payment_state", "refunded_cents"),
    *("captured_at", "voided_at", "refunded_at", "disputed_at", "created_at", "updated_at"),
)
CALL_COLUMNS = (
    *("id", "seller_id", "transaction_id", "buyer_email", "note", "status", "cancel_reason", "created_at"),
    *("updated_at", "expires_at", "accepted_at", "declined_at", "cancelled_at", "join_deadline", "join_key"),
    *("video_provider", "room_name", "room_url", "room_ready_at", "room_deleted_at", "buyer_joined_at"),
    *("seller_joined_at", "buyer_present", "seller_present", "started_at", "ends_at", "ended_at", "ended_by"),
)
RATING_COLUMNS = ("id", "call_request_id", "seller_id", "stars", "created_at")
REPORT_COLUMNS = (
    *("id", "seller_id", "call_request_id", "buyer_email", "reporter_role", "reason", "text", "status"),
    *("resolution_note", "resolved_by_id", "resolved_at", "created_at"),
)
PAYOUT_COLUMNS = (
    *("id", "seller_id", "amount_cents", "currency", "status", "reference", "reject_reason"),
    *("processed_by_id", "processed_at", "created_at"),
)
LEDGER_COLUMNS = (
    *("id", "seller_id", "kind", "amount_cents", "currency", "call_request_id", "payout_request_id", "memo"),
    "created_at",
)
OUTBOX_COLUMNS = (
    *("id", "recipient", "template", "context", "dedupe_key", "status", "attempts", "next_attempt_at"),
    *("last_error", "provider_message_id", "subject", "text_body", "html_body", "sent_at", "created_at"),
)
EVENT_COLUMNS = (
    *("id", "stripe_event_id", "type", "livemode", "payload", "status", "attempts", "error", "received_at"),
    "processed_at",
)
AUDIT_COLUMNS = ("id", "type", "ref_id", "actor", "payload", "created_at")
