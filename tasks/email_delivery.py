"""Sending outbox emails (``app.services.email_delivery``), queued by ``app.services.outbox.queue_email``
and published after commit."""

from __future__ import annotations

import uuid

from flask import current_app

from app.celery_app import chatlink_task
from app.db import db, utcnow
from app.integrations.email import mailer_for
from tasks import _runtime


class EmailRetryLater(Exception):
    """A transient failure, already recorded on the row (attempts, next_attempt_at)."""


# Celery's backoff is 30 s, 60 s, 120 s, ... with full jitter, always under the row's own
# next_attempt_at (app/services/email_delivery.py), so the sweep only steps in when a retry was
# lost or Celery gave up; the row itself gives up after MAX_ATTEMPTS. A lost database connection
# is retried the same way: nothing was recorded, and the row's lock makes a second run safe.
@chatlink_task(retry_on=(EmailRetryLater,), max_retries=5, backoff=30, backoff_max=600)
def send_email(email_id: str, *more_ids: str) -> str:
    """Send outbox rows: one, or all that one transaction queued. Each row is its own unit of
    work, so one row's failure neither holds back nor undoes another's; a retry of the whole task
    skips the rows already sent."""
    from app.services import email_delivery

    settings = _runtime.settings()
    render = email_delivery.jinja_renderer(current_app.jinja_env, app_url=settings.app_url)
    mailer = mailer_for(settings)
    outcomes: list[str] = []
    retry_error: str | None = None
    for one_id in (email_id, *more_ids):
        with db.session_scope() as session:
            result = email_delivery.deliver_email(
                session, uuid.UUID(one_id), mailer=mailer, render=render, now=utcnow()
            )
        outcomes.append(result.outcome.value)
        if result.outcome is email_delivery.DeliveryOutcome.RETRY:
            retry_error = result.error
    # Raised only after the scopes committed the failures, so the attempt counts are kept.
    if retry_error is not None:
        raise EmailRetryLater(retry_error)
    return ",".join(outcomes)
