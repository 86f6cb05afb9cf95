"""How a call's money was settled, and the problems the parties report after it.

``CallSettlement`` is written once, by the lifecycle move that ends the call (completed, a party
ended it, a no-show, a technical failure): the split of the gross into the buyer's refund, the
platform's fee and the seller's net, which always add up to the gross. ``ProblemCase`` is a
party's "this call did not happen properly", one per party per call, which an admin refunds or
closes.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models._types import UTCDateTime, UUIDPk, created_at_column, enum_column


class SettlementOutcome(enum.StrEnum):
    COMPLETED = "completed"  # the call ran to its end (the timer, the sweep, an admin)
    BUYER_ENDED = "buyer_ended"
    SELLER_ENDED_EARLY = "seller_ended_early"
    BUYER_NO_SHOW = "buyer_no_show"
    SELLER_NO_SHOW = "seller_no_show"
    TECHNICAL_FAILURE = "technical_failure"  # both joined, media never connected between them


class CallSettlement(Base):
    __tablename__ = "call_settlements"
    __table_args__ = (
        CheckConstraint("refund_cents + fee_cents + net_cents = gross_cents", name="parts_sum_to_gross"),
        CheckConstraint("refund_cents >= 0 AND fee_cents >= 0 AND net_cents >= 0", name="parts_non_negative"),
        CheckConstraint("connected_seconds >= 0", name="connected_non_negative"),
    )

    id: Mapped[UUIDPk]
    call_request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("call_requests.id", ondelete="RESTRICT"), unique=True)
    outcome: Mapped[SettlementOutcome] = enum_column(SettlementOutcome)
    connected_seconds: Mapped[int] = mapped_column(Integer)  # both parties connected, within the call
    gross_cents: Mapped[int] = mapped_column(Integer)
    refund_cents: Mapped[int] = mapped_column(Integer)  # given back to the buyer
    fee_cents: Mapped[int] = mapped_column(Integer)  # the platform's fee on what was kept
    net_cents: Mapped[int] = mapped_column(Integer)  # the seller's earning
    currency: Mapped[str] = mapped_column(String(3))
    refund_done_at: Mapped[UTCDateTime | None]  # the gateway gave ``refund_cents`` back
    created_at: Mapped[datetime] = created_at_column()


class ProblemReason(enum.StrEnum):
    NO_CONNECTION = "no_connection"
    ENDED_EARLY = "ended_early"
    POOR_QUALITY = "poor_quality"
    NO_SHOW = "no_show"
    OTHER = "other"


class ProblemStatus(enum.StrEnum):
    OPEN = "open"
    REFUNDED = "refunded"
    CLOSED = "closed"


class ProblemCase(Base):
    __tablename__ = "problem_cases"
    __table_args__ = (
        UniqueConstraint("call_request_id", "party", name="uq_problem_cases_call_request_id_party"),
        CheckConstraint("party IN ('buyer', 'seller')", name="party_known"),
        CheckConstraint("refund_cents >= 0 AND reversal_cents >= 0", name="amounts_non_negative"),
        Index("ix_problem_cases_status_created", "status", "created_at"),
    )

    id: Mapped[UUIDPk]
    call_request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("call_requests.id", ondelete="RESTRICT"))
    party: Mapped[str] = mapped_column(String(6))
    reason: Mapped[ProblemReason] = enum_column(ProblemReason)
    details: Mapped[str] = mapped_column(Text, default="", server_default="")
    # The call's facts when the case was opened (intervals per party, who ended it, amounts), so
    # the admin decides on what the server measured, not on either party's word.
    facts: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    status: Mapped[ProblemStatus] = enum_column(ProblemStatus, default=ProblemStatus.OPEN)
    refund_cents: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    reversal_cents: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # taken from the seller
    resolution_note: Mapped[str | None] = mapped_column(Text)
    resolved_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    resolved_at: Mapped[UTCDateTime | None]
    refund_done_at: Mapped[UTCDateTime | None]
    # The sweep leaves the case's refund alone until then (it was just re-published).
    sweep_lease_until: Mapped[UTCDateTime | None]
    created_at: Mapped[datetime] = created_at_column()
