"""Queueing an email: a row in the outbox, written in the caller's transaction.

The row is delivered by ``tasks.email.send_email`` after commit. ``dedupe_key`` names the cause
(``"request_created:seller:<request id>"``): queueing again for the same cause is a no-op, which
is what makes a repeated webhook or task send one email, not two.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.models import OutboxEmail
from app.queue import enqueue_after_commit

SEND_TASK = "tasks.email.send_email"


def queue_email(
    session: Session,
    *,
    recipient: str,
    template: str,
    context: dict[str, Any],
    dedupe_key: str | None = None,
) -> uuid.UUID | None:
    """Add an email to the outbox. Returns its id, or None when ``dedupe_key`` was already used."""
    email_id = uuid.uuid4()
    statement = (
        insert(OutboxEmail)
        .values(id=email_id, recipient=recipient, template=template, context=context, dedupe_key=dedupe_key)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(OutboxEmail.id)
    )
    inserted = session.execute(statement).scalar_one_or_none()
    if inserted is None:
        return None
    enqueue_after_commit(session, SEND_TASK, str(inserted))
    return inserted


def find_email(session: Session, email_id: uuid.UUID) -> OutboxEmail | None:
    return session.scalar(select(OutboxEmail).where(OutboxEmail.id == email_id))
