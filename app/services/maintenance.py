"""The periodic sweep: finds work that a lost message or a dead worker left undone.

Every step is idempotent, so two beats, or a sweep racing the task it backs up, are harmless.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.models import EmailStatus, OutboxEmail, StripeEvent, StripeEventStatus


def pending_work(session: Session, now: datetime, settings: Settings) -> dict[str, int]:
    """Counts of work waiting in the inbox and the outbox, for the sweep's log line."""
    inbox = session.scalar(
        select(func.count()).select_from(StripeEvent).where(StripeEvent.status == StripeEventStatus.RECEIVED)
    )
    outbox = session.scalar(
        select(func.count()).select_from(OutboxEmail).where(OutboxEmail.status == EmailStatus.PENDING)
    )
    return {"inbox_pending": inbox or 0, "outbox_pending": outbox or 0}
