"""A seller's block list and reports for the admins."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models._types import Email, UTCDateTime, UUIDPk, created_at_column, enum_column


class Block(Base):
    __tablename__ = "blocks"
    __table_args__ = (UniqueConstraint("seller_id", "buyer_email", name="uq_blocks_seller_id_buyer_email"),)

    id: Mapped[UUIDPk]
    seller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    buyer_email: Mapped[Email]
    created_at: Mapped[datetime] = created_at_column()


class ReporterRole(enum.StrEnum):
    BUYER = "buyer"
    SELLER = "seller"


class ReportStatus(enum.StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class Report(Base):
    __tablename__ = "reports"
    __table_args__ = (
        UniqueConstraint("call_request_id", "reporter_role", name="uq_reports_call_request_id_reporter_role"),
        Index("ix_reports_status_created", "status", "created_at"),
    )

    id: Mapped[UUIDPk]
    seller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    call_request_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("call_requests.id", ondelete="SET NULL"))
    buyer_email: Mapped[Email | None]
    reporter_role: Mapped[ReporterRole] = enum_column(ReporterRole)
    reason: Mapped[str] = mapped_column(String(40))  # a category: harassment, no_show, ...
    text: Mapped[str] = mapped_column(Text, default="", server_default="")
    status: Mapped[ReportStatus] = enum_column(ReportStatus, default=ReportStatus.OPEN)
    resolution_note: Mapped[str | None] = mapped_column(Text)
    resolved_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    resolved_at: Mapped[UTCDateTime | None]
    created_at: Mapped[datetime] = created_at_column()
