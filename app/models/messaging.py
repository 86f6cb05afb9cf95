"""The email outbox and the audit event log."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models._types import Email, UTCDateTime, UUIDPk, created_at_column, enum_column


class EmailStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # permanent: the provider refused it and a retry cannot help
    WITHDRAWN = "withdrawn"  # never sent: its cause stopped holding first (a reminder of a cancelled call)


class OutboxEmail(Base):
    """An email written in the same transaction as the change that causes it, sent later by a
    task. ``dedupe_key`` makes the writer repeat-safe: the same cause never queues two emails."""

    __tablename__ = "email_outbox"
    __table_args__ = (
        Index("ix_email_outbox_pending", "status", "next_attempt_at"),
        # The "account deleted" emails still holding the old address until they are scrubbed
        # (app.services.privacy.scrub_farewell_emails): tiny, so the sweep never scans the outbox.
        Index(
            "ix_email_outbox_farewell_unscrubbed",
            "id",
            postgresql_where=text("template = 'account_deleted' AND right(recipient, 8) <> '@invalid'"),
        ),
    )

    id: Mapped[UUIDPk]
    recipient: Mapped[Email]
    template: Mapped[str] = mapped_column(String(60))
    context: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    status: Mapped[EmailStatus] = enum_column(EmailStatus, default=EmailStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[UTCDateTime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    provider_message_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    # Rendered at send time and kept, so the dev mailbox shows exactly what was delivered.
    subject: Mapped[str | None] = mapped_column(String(200))
    text_body: Mapped[str | None] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[UTCDateTime | None]
    created_at: Mapped[datetime] = created_at_column()


class EventLog(Base):
    """Append-only audit trail: who did what to which object. Never a password or a token."""

    __tablename__ = "event_log"
    __table_args__ = (
        Index("ix_event_log_type_created", "type", "created_at"),
        Index("ix_event_log_ref_id", "ref_id"),
        # The admin's event log, newest first, unfiltered.
        Index("ix_event_log_created", "created_at"),
    )

    id: Mapped[UUIDPk]
    type: Mapped[str] = mapped_column(String(60))
    ref_id: Mapped[str | None] = mapped_column(String(255))
    actor: Mapped[str | None] = mapped_column(String(100))  # "user:<id>", "system", "stripe"
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = created_at_column()
