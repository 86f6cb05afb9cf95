"""Sending one outbox email (queued by ``app.services.outbox.queue_email`` after commit)."""

from __future__ import annotations

import uuid

from celery import shared_task
from flask import current_app

from app.db import utcnow
from app.integrations.email import mailer_for
from app.services.email_delivery import DeliveryOutcome, deliver_email, jinja_renderer


class EmailRetryLater(Exception):
    """A transient failure, already recorded on the row (attempts, next_attempt_at)."""


# Celery's backoff is 30 s, 60 s, 120 s, ... with full jitter, always under the row's own
# next_attempt_at (app/services/email_delivery.py), so the sweep only steps in when a retry was
# lost or Celery gave up; the row itself gives up after MAX_ATTEMPTS.
@shared_task(
    name="tasks.email.send_email",
    bind=True,
    ignore_result=True,
    autoretry_for=(EmailRetryLater,),
    retry_backoff=30,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=5,
)
def send_email(self, email_id: str) -> str:  # type: ignore[no-untyped-def]
    settings = current_app.extensions["settings"]
    render = jinja_renderer(current_app.jinja_env, app_url=settings.app_url)
    with self.session_scope() as session:
        result = deliver_email(session, uuid.UUID(email_id), mailer=mailer_for(settings), render=render, now=utcnow())
    # Raised only after the scope committed the failure, so the attempt count is kept.
    if result.outcome is DeliveryOutcome.RETRY:
        raise EmailRetryLater(result.error)
    return result.outcome.value
