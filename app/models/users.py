"""Sellers and admins, their public profile, their availability, and password reset tokens."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base
from app.models._types import (
    Email,
    UTCDateTime,
    UUIDPk,
    created_at_column,
    enum_column,
    updated_at_column,
)


class Role(enum.StrEnum):
    SELLER = "SELLER"
    ADMIN = "ADMIN"


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        # The admin's sellers list (newest first) and count of suspended sellers.
        Index("ix_users_created", "created_at"),
        Index("ix_users_suspended", "role", postgresql_where=text("suspended_at IS NOT NULL")),
    )

    id: Mapped[UUIDPk]
    # Stored normalised (trimmed, lower-case); a deleted account's email is replaced by a tombstone.
    email: Mapped[Email] = mapped_column(unique=True)
    password_hash: Mapped[str] = mapped_column(String(100))
    role: Mapped[Role] = enum_column(Role, default=Role.SELLER)
    email_verified_at: Mapped[UTCDateTime | None]
    # Lockout: failed_logins counts toward the next lock; lockouts doubles each lock's length.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lockouts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[UTCDateTime | None]
    # Bumped to end every session of the user (password reset, account deletion).
    session_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    suspended_at: Mapped[UTCDateTime | None]
    deleted_at: Mapped[UTCDateTime | None]
    last_login_at: Mapped[UTCDateTime | None]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()

    profile: Mapped[Profile | None] = relationship(back_populates="user", uselist=False)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    # The four members Flask-Login expects of a user object.
    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        return self.deleted_at is None

    def get_id(self) -> str:
        """The session remembers the id with the session version, so bumping the version
        (password reset, account deletion) ends every existing session."""
        return f"{self.id}:{self.session_version}"


class Profile(Base):
    __tablename__ = "profiles"
    __table_args__ = (
        CheckConstraint("price_cents BETWEEN 100 AND 100000", name="price_range"),
        CheckConstraint("slug ~ '^[a-z0-9-]{3,40}$'", name="slug_format"),
    )

    id: Mapped[UUIDPk]
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    display_name: Mapped[str] = mapped_column(String(60))
    bio: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Key of the stored photo in the storage adapter; None when the seller has no photo.
    photo_key: Mapped[str | None] = mapped_column(String(200))
    price_cents: Mapped[int] = mapped_column(Integer, default=1000, server_default="1000")
    currency: Mapped[str] = mapped_column(String(3), default="usd", server_default="usd")
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()

    user: Mapped[User] = relationship(back_populates="profile")


class SellerAvailability(Base):
    """When a seller takes calls: weekly hours in their own time zone (``weekly`` is a list of
    ``{"day": "mon".."sun", "from": "HH:MM", "to": "HH:MM"}``, validated by
    ``app.services.availability``), and the "available now" switch, which is on until
    ``available_now_until`` (pushed forward while the seller is around)."""

    __tablename__ = "seller_availability"

    id: Mapped[UUIDPk]
    seller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    weekly: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list, server_default="[]")
    available_now_until: Mapped[UTCDateTime | None]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class PasswordResetToken(Base):
    __tablename__ = "password_reset_tokens"

    id: Mapped[UUIDPk]
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # SHA-256 of the token sent by email; the token itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[UTCDateTime]
    used_at: Mapped[UTCDateTime | None]
    created_at: Mapped[datetime] = created_at_column()


class PhotoDeletion(Base):
    """A deleted profile's stored photos still to be removed: the durable to-do behind the task,
    so a broker down at the moment of deletion delays the removal, never loses it."""

    __tablename__ = "photo_deletions"
    __table_args__ = (Index("ix_photo_deletions_due", "next_attempt_at", postgresql_where=text("done_at IS NULL")),)

    profile_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # the row it outlives is gone
    requested_at: Mapped[datetime] = created_at_column()
    next_attempt_at: Mapped[UTCDateTime]
    done_at: Mapped[UTCDateTime | None]
