"""Delivering the outbox: render one row, send it once, record what happened.

``deliver_email`` locks the row (``FOR UPDATE``) for the whole send, so two workers given the same
row take turns and the second finds it already sent. The outcome decides what the task does:

* SENT: the provider's message id, the time and the rendered subject and bodies are recorded
  (the dev mailbox shows exactly what was sent).
* FAILED: a permanent refusal (Postmark 406 inactive recipient, 300 invalid request, a template
  that does not render) or too many transient failures. Never retried.
* RETRY: a transient failure (network, timeout, 429, 5xx, a configuration error).
  ``attempts`` grows and ``next_attempt_at`` is set; the task raises so Celery retries it, and if
  that retry is lost the sweep (``requeue_due_emails``) enqueues the row again once it is due.
* SKIPPED: the row is missing or already finished; a repeated task is a no-op.

Rendering needs Jinja, which the task owns; it passes a ``render(name, context)`` callable
(``jinja_renderer`` builds one from any Jinja environment) so this module stays free of Flask.
"""

from __future__ import annotations

import enum
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import jinja2
from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.orm import Session

from app import metrics
from app.config import Settings
from app.integrations.email import Attachment, EmailDeliveryError, Mailer, OutgoingEmail
from app.models import EmailStatus, OutboxEmail
from app.queue import enqueue_now
from app.services.sweeping import Moment, looks_for
from tasks import email_delivery as email_tasks

log = logging.getLogger(__name__)

# Transient failures are retried this many times in all (Celery's retries, then the sweep's).
MAX_ATTEMPTS = 10
# The first retry waits this long and each later one twice as long, up to RETRY_DELAY_MAX. The
# task's own Celery backoff (tasks/email.py) is at most half of it, so the sweep only picks a row
# up when Celery's retry was lost or exhausted.
RETRY_DELAY_BASE = timedelta(seconds=60)
RETRY_DELAY_MAX = timedelta(hours=1)
# A row never attempted this long after it was written lost its message (the broker was down at
# commit time, or a worker died holding it).
NEVER_ATTEMPTED_GRACE = timedelta(seconds=60)
# After the sweep re-enqueues a row it leaves it alone this long, so a slow queue is not flooded
# with copies of the same message every few seconds.
SWEEP_LEASE = timedelta(minutes=5)
SWEEP_BATCH = 100

SUBJECT_MAX = 200  # OutboxEmail.subject's length: we store exactly what we send
TEMPLATE_NAME = re.compile(r"[a-z0-9][a-z0-9_]*\Z")


class RenderedEmail(NamedTuple):
    subject: str
    text_body: str
    html_body: str


Render = Callable[[str, Mapping[str, Any]], RenderedEmail]


class DeliveryOutcome(enum.StrEnum):
    SENT = "sent"
    FAILED = "failed"
    RETRY = "retry"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class DeliveryResult:
    outcome: DeliveryOutcome
    error: str | None = None


def deliver_email(
    session: Session, email_id: uuid.UUID, *, mailer: Mailer, render: Render, now: datetime
) -> DeliveryResult:
    """Send outbox row ``email_id`` unless it is already sent or failed. Repeat-safe."""
    email = session.scalar(select(OutboxEmail).where(OutboxEmail.id == email_id).with_for_update())
    if email is None:
        log.warning("outbox email not found", extra={"email_id": str(email_id)})
        return DeliveryResult(DeliveryOutcome.SKIPPED, "not found")
    if email.status != EmailStatus.PENDING:
        return DeliveryResult(DeliveryOutcome.SKIPPED, f"already {email.status.value}")

    try:
        rendered = render(email.template, email.context)
    except Exception as exc:
        # A missing or broken template is a code defect: retrying the same code cannot help.
        log.exception("email template failed to render", extra={"email_id": str(email_id), "template": email.template})
        error = f"render: {type(exc).__name__}: {exc}"
        _finish(session, email, EmailStatus.FAILED, last_error=error)
        return DeliveryResult(DeliveryOutcome.FAILED, error)

    bodies = {
        "subject": rendered.subject[:SUBJECT_MAX],
        "text_body": rendered.text_body,
        "html_body": rendered.html_body,
    }
    message = OutgoingEmail(
        email_id=str(email.id), to=email.recipient, tag=email.template, attachments=attachments_of(email), **bodies
    )
    try:
        message_id = mailer.send(message)
    except EmailDeliveryError as exc:
        if exc.permanent:
            log.warning("email refused permanently", extra={"email_id": str(email_id), "error": str(exc)})
            _finish(session, email, EmailStatus.FAILED, attempts=email.attempts + 1, last_error=str(exc), **bodies)
            return DeliveryResult(DeliveryOutcome.FAILED, str(exc))
        return _schedule_retry(session, email, str(exc), now, bodies)
    except Exception as exc:
        # An adapter defect is not a reason to send twice or to give up at once: retry, bounded.
        log.exception("mailer raised an unexpected error", extra={"email_id": str(email_id)})
        return _schedule_retry(session, email, f"{type(exc).__name__}: {exc}", now, bodies)

    log.info("email sent", extra={"email_id": str(email_id), "template": email.template})
    sent = {"provider_message_id": message_id, "sent_at": now, "attempts": email.attempts + 1, "last_error": None}
    _finish(session, email, EmailStatus.SENT, **sent, **bodies)
    return DeliveryResult(DeliveryOutcome.SENT)


def attachments_of(email: OutboxEmail) -> tuple[Attachment, ...]:
    """The files the email carries: built by the move that queued it (a calendar invitation)
    and kept in its context, so a retry or the dev mailbox sends and shows the same bytes."""
    return tuple(
        Attachment(name=str(item["name"]), content_type=str(item["content_type"]), content_base64=str(item["content"]))
        for item in email.context.get("attachments") or ()
    )


def retry_delay(attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th failed attempt (1, 2, ...)."""
    delay: timedelta = RETRY_DELAY_BASE * 2 ** max(attempts - 1, 0)
    return min(delay, RETRY_DELAY_MAX)


def _schedule_retry(
    session: Session, email: OutboxEmail, error: str, now: datetime, bodies: dict[str, str]
) -> DeliveryResult:
    attempts = email.attempts + 1
    if attempts >= MAX_ATTEMPTS:
        log.warning("email given up after repeated failures", extra={"email_id": str(email.id), "attempts": attempts})
        error = f"gave up after {attempts} attempts: {error}"
        _finish(session, email, EmailStatus.FAILED, attempts=attempts, last_error=error, **bodies)
        return DeliveryResult(DeliveryOutcome.FAILED, error)
    log.info("email will be retried", extra={"email_id": str(email.id), "attempts": attempts, "error": error})
    _finish(
        session,
        email,
        EmailStatus.PENDING,
        attempts=attempts,
        next_attempt_at=now + retry_delay(attempts),
        last_error=error,
        **bodies,
    )
    return DeliveryResult(DeliveryOutcome.RETRY, error)


def _finish(session: Session, email: OutboxEmail, status: EmailStatus, **values: Any) -> None:
    """One conditional UPDATE of a row still PENDING (we hold its lock, so it is)."""
    session.execute(
        update(OutboxEmail)
        .where(OutboxEmail.id == email.id, OutboxEmail.status == EmailStatus.PENDING)
        .values(status=status, **values)
        .execution_options(synchronize_session=False)
    )
    # Every delivery attempt ends here: sent, given up (permanent) or to be retried (temporary).
    if status == EmailStatus.SENT:
        metrics.email_sent(email.template)
    else:
        metrics.email_failed(email.template, permanent=status == EmailStatus.FAILED)
    session.expire(email)


def _due(now: Moment) -> Select[tuple[uuid.UUID]]:
    """PENDING rows whose retry is due, or never attempted a minute after being written."""
    return select(OutboxEmail.id).where(
        OutboxEmail.status == EmailStatus.PENDING,
        or_(
            OutboxEmail.next_attempt_at <= now,
            and_(OutboxEmail.next_attempt_at.is_(None), OutboxEmail.created_at <= now - NEVER_ATTEMPTED_GRACE),
        ),
    )


@looks_for(lambda now: _due(now).exists())
def requeue_due_emails(session: Session, now: datetime, settings: Settings) -> dict[str, int]:
    """Sweep step: enqueue PENDING rows whose retry is due, or that were never attempted a minute
    after being written. Bounded, and idempotent: a re-enqueued row is leased for SWEEP_LEASE;
    rows being sent right now are locked and skipped."""
    ids = session.scalars(
        _due(now).order_by(OutboxEmail.created_at).limit(SWEEP_BATCH).with_for_update(skip_locked=True)
    ).all()
    # Publish first and lease only what was published: a row the broker refused stays due.
    published = [email_id for email_id in ids if enqueue_now(email_tasks.send_email, str(email_id))]
    if published:
        session.execute(
            update(OutboxEmail)
            .where(OutboxEmail.id.in_(published), OutboxEmail.status == EmailStatus.PENDING)
            .values(next_attempt_at=now + SWEEP_LEASE)
            .execution_options(synchronize_session=False)
        )
    return {"outbox_requeued": len(published), "outbox_requeue_failed": len(ids) - len(published)}


def jinja_renderer(env: jinja2.Environment, *, app_url: str) -> Render:
    """A ``render(name, context)`` over ``emails/NAME.txt`` and ``emails/NAME.html``.

    The subject is the ``subject`` block of the text template, on one line. Both templates get
    ``app_url`` and the rendered ``subject`` besides the row's own context.
    """

    def render(name: str, context: Mapping[str, Any]) -> RenderedEmail:
        if not TEMPLATE_NAME.match(name):
            raise ValueError(f"not an email template name: {name!r}")
        values = {**context, "app_url": app_url.rstrip("/")}
        text_template = env.get_template(f"emails/{name}.txt")
        html_template = env.get_template(f"emails/{name}.html")
        subject_block = text_template.blocks.get("subject")
        if subject_block is None:
            raise ValueError(f"emails/{name}.txt has no {{% block subject %}}")
        subject = " ".join("".join(subject_block(text_template.new_context(values))).split())
        if not subject:
            raise ValueError(f"emails/{name}.txt renders an empty subject")
        values["subject"] = subject[:SUBJECT_MAX]
        return RenderedEmail(
            subject=values["subject"],
            text_body=text_template.render(values).strip() + "\n",
            html_body=html_template.render(values).strip() + "\n",
        )

    return render


def list_emails(session: Session, *, limit: int = 100, recipient: str | None = None) -> list[OutboxEmail]:
    """The outbox, newest first (the dev mailbox's listing)."""
    query = select(OutboxEmail).order_by(OutboxEmail.created_at.desc(), OutboxEmail.id.desc()).limit(limit)
    if recipient:
        query = query.where(func.lower(OutboxEmail.recipient) == recipient.strip().lower())
    return list(session.scalars(query))
