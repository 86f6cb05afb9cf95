"""Where a seller's money goes: their Stripe Connect account, their manual payout method and
schedule, the Stripe Transfers that pay them, and the weekly automatic payouts.

Every provider id is UNIQUE (a Connect account id, a Transfer id), and so is each thing that must
happen once: one Connect account per seller, one transfer per payout, one automatic payout per
seller and week. A repeated webhook, task or beat run therefore changes nothing.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models._types import UTCDateTime, UUIDPk, created_at_column, enum_column, updated_at_column


class ConnectAccount(Base):
    """A seller's Stripe Connect Express account (or the built-in twin's). Its state is what
    Stripe said the last time we fetched the account, after an ``account.updated`` webhook."""

    __tablename__ = "connect_accounts"

    id: Mapped[UUIDPk]
    seller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), unique=True)
    stripe_account_id: Mapped[str] = mapped_column(String(255), unique=True)
    country: Mapped[str] = mapped_column(String(2))
    details_submitted: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    charges_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    payouts_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    requirements_due: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default="[]")
    disabled_reason: Mapped[str | None] = mapped_column(String(100))
    synced_at: Mapped[UTCDateTime | None]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class PayoutSchedule(enum.StrEnum):
    MANUAL = "manual"  # the seller asks for each payout
    WEEKLY = "weekly"  # the whole available balance, once a week


class PayoutMethodKind(enum.StrEnum):
    IBAN = "iban"
    PAYPAL = "paypal"


class PayoutSettings(Base):
    """The seller's payout preferences and their manual payout method (the fallback where
    Connect is not available). The full IBAN or PayPal address is stored encrypted; only its
    last four characters are ever shown back to the seller."""

    __tablename__ = "payout_settings"

    id: Mapped[UUIDPk]
    seller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    schedule: Mapped[PayoutSchedule] = enum_column(PayoutSchedule, default=PayoutSchedule.MANUAL)
    method_kind: Mapped[PayoutMethodKind | None] = enum_column(PayoutMethodKind, nullable=True)
    method_holder: Mapped[str | None] = mapped_column(String(120))
    method_last4: Mapped[str | None] = mapped_column(String(4))
    method_ciphertext: Mapped[str | None] = mapped_column(Text)
    method_updated_at: Mapped[UTCDateTime | None]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class TransferState(enum.StrEnum):
    SENDING = "sending"  # the payout is recorded; a worker is (re)sending the Transfer
    SENT = "sent"  # Stripe created the Transfer: the money is in the seller's Stripe balance
    FAILED = "failed"  # Stripe refused it; the amount is back in the seller's balance
    REVERSED = "reversed"  # the Transfer was reversed afterwards; the amount is back too


class PayoutTransfer(Base):
    """The Stripe Transfer that pays one payout to a Connect seller (separate charges and
    transfers). The idempotency key is derived from the payout id, so a retried task or a second
    worker can never create a second Transfer for the same payout."""

    __tablename__ = "payout_transfers"

    id: Mapped[UUIDPk]
    payout_request_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("payout_requests.id", ondelete="RESTRICT"), unique=True
    )
    seller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    destination: Mapped[str] = mapped_column(String(255))  # the Connect account id
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    transfer_group: Mapped[str] = mapped_column(String(255))
    state: Mapped[TransferState] = enum_column(TransferState, default=TransferState.SENDING)
    stripe_transfer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    amount_reversed_cents: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    # A failed transfer an admin retried: the payout that retried it (one retry per failure).
    retried_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("payout_requests.id", ondelete="SET NULL"), unique=True
    )
    last_attempt_at: Mapped[UTCDateTime | None]
    sent_at: Mapped[UTCDateTime | None]
    failed_at: Mapped[UTCDateTime | None]
    reversed_at: Mapped[UTCDateTime | None]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class AutomaticPayout(Base):
    """One automatic payout per seller and ISO week (``2026-W48``): a second beat, or the same
    beat run twice, finds the row and does nothing."""

    __tablename__ = "automatic_payouts"
    __table_args__ = (UniqueConstraint("seller_id", "period", name="uq_automatic_payouts_seller_id_period"),)

    id: Mapped[UUIDPk]
    seller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    period: Mapped[str] = mapped_column(String(10))
    payout_request_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("payout_requests.id", ondelete="SET NULL"), unique=True
    )
    created_at: Mapped[datetime] = created_at_column()
