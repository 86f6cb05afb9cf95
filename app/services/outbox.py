"""Queueing an email: a row in the outbox, written in the caller's transaction.

The row is delivered by ``tasks.email_delivery.send_email`` after commit (the rows one transaction queues
go in one task). ``dedupe_key`` names the cause
(``"request_created:seller:<request id>"``): queueing again for the same cause is a no-op, which
is what makes a repeated webhook or task send one email, not two.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Uuid, bindparam, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from app.db import utcnow
from app.models import EmailStatus, OutboxEmail
from app.queue import enqueue_batch_after_commit
from tasks import email_delivery as email_tasks

# SQL rather than ``postgresql.insert``, whose ON CONFLICT form SQLAlchemy compiles again on every
# call (see stripe_events._INSERT_EVENT); every paid request queues two of these.
_INSERT_EMAIL = text(
    "INSERT INTO email_outbox (id, recipient, template, context, dedupe_key, status, attempts, created_at)"
    " VALUES (:id, :recipient, :template, :context, :dedupe_key, :status, 0, :created_at)"
    " ON CONFLICT (dedupe_key) DO NOTHING RETURNING id"
).bindparams(bindparam("id", type_=Uuid()), bindparam("context", type_=JSONB()))


def queue_email(
    session: Session,
    *,
    recipient: str,
    template: str,
    context: dict[str, Any],
    dedupe_key: str | None = None,
) -> uuid.UUID | None:
    """Add an email to the outbox. Returns its id, or None when ``dedupe_key`` was already used."""
    values = {
        "id": uuid.uuid4(),
        "recipient": recipient,
        "template": template,
        "context": context,
        "dedupe_key": dedupe_key,
        "status": EmailStatus.PENDING.value,
        "created_at": utcnow(),
    }
    inserted: uuid.UUID | None = session.execute(_INSERT_EMAIL, values).scalar_one_or_none()
    if inserted is None:
        return None
    enqueue_batch_after_commit(session, email_tasks.send_email, str(inserted))
    return inserted


def find_email(session: Session, email_id: uuid.UUID) -> OutboxEmail | None:
    return session.scalar(select(OutboxEmail).where(OutboxEmail.id == email_id))


def withdraw_emails(session: Session, dedupe_keys: list[str]) -> int:
    """Withdraw queued emails whose cause no longer holds (the reminders of a call that was
    cancelled or moved): PENDING rows with these keys become WITHDRAWN and are never sent. A row
    a worker is sending at this very moment is left to it (``SKIP LOCKED``) rather than waited for."""
    if not dedupe_keys:
        return 0
    ids = session.scalars(
        select(OutboxEmail.id)
        .where(OutboxEmail.dedupe_key.in_(dedupe_keys), OutboxEmail.status == EmailStatus.PENDING)
        .with_for_update(skip_locked=True)
    ).all()
    if ids:
        session.execute(
            update(OutboxEmail)
            .where(OutboxEmail.id.in_(ids))
            .values(status=EmailStatus.WITHDRAWN, last_error="withdrawn: the call was cancelled or moved")
            .execution_options(synchronize_session=False)
        )
    return len(ids)
