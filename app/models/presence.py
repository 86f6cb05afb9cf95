"""What really happened in a call's room: each party's connected intervals, and Daily's webhook inbox.

A ``PresenceInterval`` is a span of time during which one party's media was connected, as the
server learnt it: from the built-in room's page (it reports ``connected`` only while its
RTCPeerConnection is connected and the other party's video plays, and heartbeats meanwhile) or
from Daily (its webhooks, or its REST presence polled by the worker). The clock starts when both
parties' intervals first overlap, and the connected seconds that settle an early end are measured
from them; they are rows, not Redis keys, so a settlement survives a restart.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models._types import UTCDateTime, UUIDPk, created_at_column, enum_column


class PresenceSource(enum.StrEnum):
    PAGE = "page"  # the built-in room's page: heartbeats while media flows
    DAILY = "daily"  # Daily's webhooks or its REST presence: the authority for a Daily room


class PresenceInterval(Base):
    __tablename__ = "presence_intervals"
    __table_args__ = (
        CheckConstraint("party IN ('buyer', 'seller')", name="party_known"),
        CheckConstraint("ended_at IS NULL OR ended_at >= started_at", name="ends_after_start"),
        # A Daily participant session is one interval however often its events are delivered.
        UniqueConstraint("call_request_id", "source", "session_key", name="uq_presence_intervals_session"),
        # At most one open page interval per party: two heartbeats racing cannot open two. (Daily
        # may announce a participant's new session before the old one's end, so not for Daily.)
        Index(
            "ix_presence_intervals_one_open_page",
            "call_request_id",
            "party",
            unique=True,
            postgresql_where=text("ended_at IS NULL AND source = 'page'"),
        ),
    )

    id: Mapped[UUIDPk]
    call_request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("call_requests.id", ondelete="CASCADE"))
    party: Mapped[str] = mapped_column(String(6))
    source: Mapped[PresenceSource] = enum_column(PresenceSource)
    # The page's window id and a counter, or Daily's participant session id.
    session_key: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[UTCDateTime]
    # The page's latest heartbeat (an open page interval is live while this is recent); Daily's
    # intervals stay open until Daily says the participant left.
    last_seen_at: Mapped[UTCDateTime | None]
    ended_at: Mapped[UTCDateTime | None]
    created_at: Mapped[datetime] = created_at_column()


class DailyEventStatus(enum.StrEnum):
    RECEIVED = "received"
    PROCESSED = "processed"
    IGNORED = "ignored"
    FAILED = "failed"


class DailyEvent(Base):
    """Daily's webhook inbox: every verified event, stored before any work is done on it."""

    __tablename__ = "daily_events"
    __table_args__ = (Index("ix_daily_events_pending", "status", "received_at"),)

    id: Mapped[UUIDPk]
    daily_event_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[DailyEventStatus] = enum_column(DailyEventStatus, default=DailyEventStatus.RECEIVED)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = created_at_column()
    processed_at: Mapped[UTCDateTime | None]
