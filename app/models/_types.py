"""Column helpers shared by every model: UUID keys, UTC timestamps, string-backed enums."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated, Any

from sqlalchemy import DateTime, Enum, String, func
from sqlalchemy.orm import Mapped, mapped_column

from app.db import utcnow

UUIDPk = Annotated[uuid.UUID, mapped_column(primary_key=True, default=uuid.uuid4)]
UTCDateTime = Annotated[datetime, mapped_column(DateTime(timezone=True))]
Email = Annotated[str, mapped_column(String(254))]


def created_at_column() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), default=utcnow, server_default=func.now())


def updated_at_column() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow, server_default=func.now())


def enum_column(enum_cls: type[enum.Enum], **kwargs: Any) -> Mapped[Any]:
    """Store an enum as its value in a VARCHAR with a CHECK constraint (no native PG enum,
    so adding a member is a plain migration)."""
    return mapped_column(
        Enum(
            enum_cls,
            native_enum=False,
            create_constraint=True,
            length=32,
            values_callable=lambda members: [m.value for m in members],
            name=enum_cls.__name__.lower(),
            validate_strings=True,
        ),
        **kwargs,
    )
