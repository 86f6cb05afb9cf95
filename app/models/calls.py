"""A paid request for a call, from PENDING to its end, and the buyer's rating of it."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer, String, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base
from app.models._types import Email, UTCDateTime, UUIDPk, created_at_column, enum_column, updated_at_column
from app.models.payments import Transaction

if TYPE_CHECKING:
    from app.models.settlement import CallSettlement

COMMENT_MAX = 500  # a rating's comment


class RequestStatus(enum.StrEnum):
    PENDING = "PENDING"
    ACCEPTED = "ACCEPTED"
    DECLINED = "DECLINED"
    CANCELLED = "CANCELLED"
    COMPLETED = "COMPLETED"


class CancelReason(enum.StrEnum):
    EXPIRED = "expired"
    SELLER_NO_SHOW = "seller_no_show"
    BUYER_NO_SHOW = "buyer_no_show"
    BLOCKED = "blocked"
    PAYMENT_FAILED = "payment_failed"
    ADMIN = "admin"
    SUSPENDED = "suspended"  # the seller was suspended before the call could happen
    BUYER_CANCELLED = "buyer_cancelled"  # the buyer withdrew: before the seller answered, or a scheduled call in time
    TECHNICAL_FAILURE = "technical_failure"  # both joined, but media never connected between them


class CallRequest(Base):
    __tablename__ = "call_requests"
    __table_args__ = (
        CheckConstraint("ends_at IS NULL OR started_at IS NOT NULL", name="ends_after_start"),
        CheckConstraint("(status = 'CANCELLED') = (cancel_reason IS NOT NULL)", name="cancel_reason_iff_cancelled"),
        # A seller's requests, newest first: of one status (dashboard, /requests) ...
        Index("ix_call_requests_seller_status_created", "seller_id", "status", "created_at"),
        # ... or all of them, with the answer times for the paywall's latest answers (no table read) ...
        Index(
            "ix_call_requests_seller_created_answered",
            "seller_id",
            "created_at",
            postgresql_include=["accepted_at", "declined_at"],
        ),
        # ... and the finished ones, the last to finish first (the dashboard's recent calls).
        Index("ix_call_requests_seller_finished", "seller_id", text("coalesce(ended_at, cancelled_at, declined_at)")),
        # The sweeps look for overdue rows by status and deadline.
        Index("ix_call_requests_status_expires", "status", "expires_at"),
        Index("ix_call_requests_status_ends", "status", "ends_at"),
        # The sweeps' follow-ups, each over the few rows that can still need one (bench/scale.py
        # shows each would otherwise read a year of calls every few seconds): rooms not yet
        # deleted, by when their call finished, and requests declined or cancelled lately (their
        # money may still be held or owed back). A cancelled request is the one with a
        # cancel_reason (a CHECK above).
        Index(
            "ix_call_requests_room_undeleted",
            text("coalesce(ended_at, cancelled_at)"),
            postgresql_where=text("room_name IS NOT NULL AND room_deleted_at IS NULL"),
        ),
        Index("ix_call_requests_declined", "declined_at", postgresql_where=text("status = 'DECLINED'")),
        Index("ix_call_requests_cancelled", "cancelled_at", postgresql_where=text("cancel_reason IS NOT NULL")),
        # The reminder sweep: only scheduled calls with a reminder still to send.
        Index(
            "ix_call_requests_reminders_due",
            "next_reminder_at",
            postgresql_where=text("next_reminder_at IS NOT NULL"),
        ),
        CheckConstraint("cardinality(proposed_starts) <= 3", name="at_most_three_proposals"),
        CheckConstraint("reschedule_by IN ('buyer', 'seller')", name="reschedule_party"),
    )

    id: Mapped[UUIDPk]
    seller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    transaction_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("transactions.id", ondelete="RESTRICT"), unique=True)
    buyer_email: Mapped[Email]
    note: Mapped[str] = mapped_column(String(280), default="", server_default="")
    status: Mapped[RequestStatus] = enum_column(RequestStatus, default=RequestStatus.PENDING)
    cancel_reason: Mapped[CancelReason | None] = enum_column(CancelReason, nullable=True)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
    expires_at: Mapped[UTCDateTime]  # a PENDING request is cancelled (expired) after this
    accepted_at: Mapped[UTCDateTime | None]
    declined_at: Mapped[UTCDateTime | None]
    cancelled_at: Mapped[UTCDateTime | None]
    join_deadline: Mapped[UTCDateTime | None]  # both must have joined by then (start + join window)
    # Scheduling. The buyer's proposed start times (none: as soon as possible) and their time zone
    # (an IANA name, for the times we show and send them); the start the seller accepted (None:
    # a call for right away); when the room opens (accepted_at for a call right away).
    proposed_starts: Mapped[list[datetime]] = mapped_column(
        ARRAY(DateTime(timezone=True)), default=list, server_default="{}"
    )
    buyer_time_zone: Mapped[str | None] = mapped_column(String(64))
    scheduled_start: Mapped[UTCDateTime | None]
    join_opens_at: Mapped[UTCDateTime | None]
    # The calendar invitation's SEQUENCE: bumped by a reschedule and by a cancellation.
    schedule_sequence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The next reminder the sweep sends (24 h, then 10 min before the start); None: none left.
    next_reminder_at: Mapped[UTCDateTime | None]
    # One reschedule per call: a party asks (once), the other confirms or keeps the time.
    reschedule_start: Mapped[UTCDateTime | None]
    reschedule_by: Mapped[str | None] = mapped_column(String(10))
    reschedule_asked_at: Mapped[UTCDateTime | None]
    reschedule_answered_at: Mapped[UTCDateTime | None]
    # Random per-request key from which each party's join credential is derived; rotating it
    # revokes both links.
    join_key: Mapped[str | None] = mapped_column(String(64))
    video_provider: Mapped[str | None] = mapped_column(String(20))
    room_name: Mapped[str | None] = mapped_column(String(128), unique=True)
    room_url: Mapped[str | None] = mapped_column(String(500))
    room_ready_at: Mapped[UTCDateTime | None]
    room_deleted_at: Mapped[UTCDateTime | None]
    buyer_joined_at: Mapped[UTCDateTime | None]  # first join of each party
    seller_joined_at: Mapped[UTCDateTime | None]
    buyer_present: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    seller_present: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    started_at: Mapped[UTCDateTime | None]  # both present for the first time
    ends_at: Mapped[UTCDateTime | None]  # started_at + CALL_DURATION_SECONDS
    ended_at: Mapped[UTCDateTime | None]
    ended_by: Mapped[str | None] = mapped_column(String(20))  # timer, sweep, seller, buyer, admin
    # The beat sweep leaves the row's follow-up work (capture, release, room) alone until then
    # (app.services.lifecycle._moves.follow_up_due): its own column, so no ordinary write moves it.
    sweep_lease_until: Mapped[UTCDateTime | None]

    transaction: Mapped[Transaction] = relationship()
    # Written once by the move that ends the call (app.services.lifecycle.settlement).
    settlement: Mapped[CallSettlement | None] = relationship(viewonly=True, lazy="select")


class Rating(Base):
    __tablename__ = "ratings"
    __table_args__ = (
        CheckConstraint("stars BETWEEN 1 AND 5", name="stars_range"),
        # The paywall's rating summary (count and average of a seller's stars) from the index
        # alone, and the dashboard's newest ratings walked in order.
        Index("ix_ratings_seller_created", "seller_id", "created_at", postgresql_include=["stars", "id"]),
    )

    id: Mapped[UUIDPk]
    call_request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("call_requests.id", ondelete="CASCADE"), unique=True)
    seller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    stars: Mapped[int]
    # What the buyer wrote with the stars, for the seller's eyes only (their dashboard).
    comment: Mapped[str] = mapped_column(String(COMMENT_MAX), default="", server_default="")
    created_at: Mapped[datetime] = created_at_column()
