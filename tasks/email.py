"""Sending outbox emails (queued by ``app.services.outbox.queue_email``, published after commit)."""

from __future__ import annotations

import uuid

from celery import shared_task
from flask import current_app
from sqlalchemy.exc import OperationalError

from app.db import utcnow
from app.integrations.email import mailer_for
from app.services.email_delivery import DeliveryOutcome, deliver_email, jinja_renderer


class EmailRetryLater(Exception):
    """A transient failure, already recorded on the row (attempts, next_attempt_at)."""


# Celery's backoff is 30 s, 60 s, 120 s, ... with full jitter, always under the row's own
# next_attempt_at (app/services/email_delivery.py), so the sweep only steps in when a retry was
# lost or Celery gave up; the row itself gives up after MAX_ATTEMPTS. A lost database connection
# is retried the same way: nothing was recorded, and the row's lock makes a second run safe.
@shared_task(
    name="tasks.email.send_email",
    bind=True,
    ignore_result=True,
    autoretry_for=(EmailRetryLater, OperationalError),
    retry_backoff=30,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=5,
)
def send_email(self, email_id: str, *more_ids: str) -> str:  # type: ignore[no-untyped-def]
    """Send outbox rows: one, or all that one transaction queued. Each row is its own unit of
    work, so one row's failure neither holds back nor undoes another's; a retry of the whole task
    skips the rows already sent."""
    settings = current_app.extensions["settings"]
    render = jinja_renderer(current_app.jinja_env, app_url=settings.app_url)
    mailer = mailer_for(settings)
    outcomes, retry_error = [], None
    for one_id in (email_id, *more_ids):
        with self.session_scope() as session:
            result = deliver_email(session, uuid.UUID(one_id), mailer=mailer, render=render, now=utcnow())
        outcomes.append(result.outcome.value)
        if result.outcome is DeliveryOutcome.RETRY:
            retry_error = result.error
    # Raised only after the scopes committed the failures, so the attempt counts are kept.
    if retry_error is not None:
        raise EmailRetryLater(retry_error)
    return ",".join(outcomes)
