"""Money: checkout attempts, transactions, the Stripe event inbox, the ledger and payouts.

Amounts are integer cents. Every provider id is UNIQUE, so a repeated webhook or task can never
record the same payment twice.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models._types import Email, UTCDateTime, UUIDPk, created_at_column, enum_column, updated_at_column


class CheckoutStatus(enum.StrEnum):
    OPEN = "open"
    COMPLETE = "complete"
    EXPIRED = "expired"


class Checkout(Base):
    """A buyer's attempt to pay: one Stripe Checkout Session. The buyer's note lives here,
    server-side, until the paid request is created."""

    __tablename__ = "checkouts"

    id: Mapped[UUIDPk]
    seller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    buyer_email: Mapped[Email]
    note: Mapped[str] = mapped_column(String(280), default="", server_default="")
    # The start times the buyer proposed (none: as soon as possible) and their IANA time zone,
    # carried to the request the payment creates.
    proposed_starts: Mapped[list[datetime]] = mapped_column(
        ARRAY(DateTime(timezone=True)), default=list, server_default="{}"
    )
    buyer_time_zone: Mapped[str | None] = mapped_column(String(64))
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    # The form's one-time token: a double submit finds the first attempt instead of a new one.
    submission_key: Mapped[str] = mapped_column(String(64), unique=True)
    stripe_checkout_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    checkout_url: Mapped[str | None] = mapped_column(Text)
    # SHA-256 of the secret in the cookie of the browser that started the checkout: only that
    # browser sees the buyer's join link on the status page (the session id is no credential).
    browser_key_hash: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[CheckoutStatus] = enum_column(CheckoutStatus, default=CheckoutStatus.OPEN)
    expires_at: Mapped[UTCDateTime]
    created_at: Mapped[datetime] = created_at_column()


class PaymentState(enum.StrEnum):
    HELD = "held"  # authorised, not captured (manual capture)
    CAPTURED = "captured"
    VOIDED = "voided"  # hold cancelled: the buyer was never charged
    REFUNDED = "refunded"
    DISPUTED = "disputed"
    CHARGED_BACK = "charged_back"  # a dispute lost: the bank gave the money back to the buyer


class Transaction(Base):
    __tablename__ = "transactions"
    __table_args__ = (
        CheckConstraint("gross_cents > 0", name="gross_positive"),
        CheckConstraint("platform_fee_cents >= 0 AND net_cents >= 0", name="parts_non_negative"),
        CheckConstraint("platform_fee_cents + net_cents = gross_cents", name="parts_sum_to_gross"),
        CheckConstraint("refunded_cents BETWEEN 0 AND gross_cents", name="refund_within_gross"),
        # The admin's disputes page (every payment ever disputed, latest first) and its count of
        # open ones: a handful among a year of payments.
        Index("ix_transactions_disputed", "disputed_at", postgresql_where=text("disputed_at IS NOT NULL")),
        Index("ix_transactions_open_disputes", "seller_id", postgresql_where=text("payment_state = 'disputed'")),
    )

    id: Mapped[UUIDPk]
    seller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    buyer_email: Mapped[Email]
    stripe_checkout_session_id: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    gross_cents: Mapped[int] = mapped_column(Integer)
    platform_fee_cents: Mapped[int] = mapped_column(Integer)
    net_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    payment_state: Mapped[PaymentState] = enum_column(PaymentState)
    refunded_cents: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    captured_at: Mapped[UTCDateTime | None]
    voided_at: Mapped[UTCDateTime | None]
    refunded_at: Mapped[UTCDateTime | None]
    disputed_at: Mapped[UTCDateTime | None]
    # Until when the hold can be captured (the card charge's ``capture_before``), when the
    # gateway says; a pending request must be decided before then.
    capture_before: Mapped[UTCDateTime | None]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class StripeEventStatus(enum.StrEnum):
    RECEIVED = "received"
    PROCESSED = "processed"
    IGNORED = "ignored"
    FAILED = "failed"


class StripeEvent(Base):
    """The webhook inbox: every verified event, stored before any work is done on it."""

    __tablename__ = "stripe_events"
    __table_args__ = (Index("ix_stripe_events_pending", "status", "received_at"),)

    id: Mapped[UUIDPk]
    stripe_event_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(100))
    livemode: Mapped[bool] = mapped_column(default=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[StripeEventStatus] = enum_column(StripeEventStatus, default=StripeEventStatus.RECEIVED)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = created_at_column()
    processed_at: Mapped[UTCDateTime | None]


class LedgerKind(enum.StrEnum):
    EARNING = "earning"  # + net of a completed call (or a buyer no-show)
    PAYOUT = "payout"  # - amount requested for payout
    REVERSAL = "reversal"  # + a rejected payout returned, or - a lost dispute or an admin's refund of a problem
    DISPUTE_HOLD = "dispute_hold"  # - the seller's share of a disputed payment, held while it is open
    DISPUTE_RELEASE = "dispute_release"  # + that hold given back when the dispute closes


class LedgerEntry(Base):
    """Append-only money movements of a seller; the balance is their sum."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("amount_cents <> 0", name="amount_non_zero"),
        # One earning per call and one row of each kind per payout: repeats are no-ops.
        UniqueConstraint("kind", "call_request_id", name="uq_ledger_entries_kind_call_request_id"),
        UniqueConstraint("kind", "payout_request_id", name="uq_ledger_entries_kind_payout_request_id"),
        # One reversal per problem case an admin refunds (a call may have two cases, one per party).
        UniqueConstraint("kind", "problem_case_id", name="uq_ledger_entries_kind_problem_case_id"),
        Index("ix_ledger_entries_seller_created", "seller_id", "created_at"),
        # The balance (sum of a seller's rows) from the index alone, however long the history.
        Index("ix_ledger_entries_seller_balance", "seller_id", "currency", postgresql_include=["amount_cents"]),
    )

    id: Mapped[UUIDPk]
    seller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    kind: Mapped[LedgerKind] = enum_column(LedgerKind)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    call_request_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("call_requests.id", ondelete="RESTRICT"))
    payout_request_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payout_requests.id", ondelete="RESTRICT"))
    problem_case_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("problem_cases.id", ondelete="RESTRICT"))
    memo: Mapped[str] = mapped_column(String(200), default="", server_default="")
    created_at: Mapped[datetime] = created_at_column()


class PayoutStatus(enum.StrEnum):
    REQUESTED = "REQUESTED"
    PROCESSED = "PROCESSED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"  # a Stripe Transfer was refused; the amount is back in the balance
    REVERSED = "REVERSED"  # a Stripe Transfer was reversed after it was sent; the amount is back


class PayoutRequest(Base):
    __tablename__ = "payout_requests"
    __table_args__ = (
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        # The admin's payout queue by status: waiting ones oldest first, decided ones newest first.
        Index("ix_payout_requests_status_created", "status", "created_at"),
    )

    id: Mapped[UUIDPk]
    seller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[PayoutStatus] = enum_column(PayoutStatus, default=PayoutStatus.REQUESTED)
    reference: Mapped[str | None] = mapped_column(String(200))
    reject_reason: Mapped[str | None] = mapped_column(String(500))
    processed_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    processed_at: Mapped[UTCDateTime | None]
    created_at: Mapped[datetime] = created_at_column()
