"""Money in: process the webhook inbox, and play Stripe's part for the built-in test-mode checkout.

``process_stripe_event`` runs one inbox row (repeat-safe: the row is locked and skipped once
handled). Only errors a later attempt can fix are retried: a gateway outage (a transient
``PaymentError``) or a lost database connection; the sweep re-publishes whatever is still
unprocessed after a minute. ``deliver_builtin_webhook`` posts a built-in event to the app's own
webhook, signed, retrying with backoff like Stripe until the app answers 2xx.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

import requests
from celery import shared_task
from flask import current_app
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.celery_app import RETRY_BACKOFF_MAX
from app.config import Settings
from app.db import utcnow
from app.extensions import redis_client
from app.integrations.builtin_payments import builtin_gateway
from app.integrations.connect import connect_gateway
from app.integrations.payments import PaymentError, payment_gateway, post_signed_event
from app.services import stripe_events

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/api/webhooks/stripe"


class WebhookRejected(Exception):
    """The app answered a built-in event with something other than 2xx: Stripe would retry."""


@shared_task(
    name="tasks.payments.process_stripe_event",
    bind=True,
    ignore_result=True,
    autoretry_for=(PaymentError, OperationalError),
    retry_backoff=2,
    retry_backoff_max=RETRY_BACKOFF_MAX,
    retry_jitter=True,
    max_retries=8,
)
def process_stripe_event(self, event_row_id: str) -> str | None:  # type: ignore[no-untyped-def]
    settings: Settings = current_app.extensions["settings"]
    gateway = payment_gateway(settings, redis_client())
    with self.session_scope() as session:
        status = stripe_events.process_event(
            session,
            uuid.UUID(event_row_id),
            gateway=gateway,
            app_env=settings.app_env,
            platform_fee_bps=settings.platform_fee_bps,
            request_ttl_seconds=settings.request_ttl_seconds,
            now=utcnow(),
            connect=connect_gateway(settings, redis_client()),
        )
    return status.value if status else None


@shared_task(
    name="tasks.payments.deliver_builtin_webhook",
    bind=True,
    ignore_result=True,
    autoretry_for=(requests.RequestException, WebhookRejected),
    retry_backoff=1,
    retry_backoff_max=RETRY_BACKOFF_MAX,
    retry_jitter=True,
    # Backoff 1 s doubling to 10 min, 12 retries: about 40 minutes of attempts (Stripe retries for days
    # in live mode, a few times over hours in test mode; this is a development twin).
    max_retries=12,
)
def deliver_builtin_webhook(self, event: dict[str, Any]) -> int:  # type: ignore[no-untyped-def]
    settings: Settings = current_app.extensions["settings"]
    status = post_signed_event(settings.app_url + WEBHOOK_PATH, event, settings.stripe_webhook_secret)
    if not 200 <= status < 300:
        raise WebhookRejected(f"{event.get('type')} {event.get('id')}: HTTP {status}")
    return status


def expire_builtin_checkouts(session: Session, now: datetime, settings: Settings) -> dict[str, int]:
    """Sweep step: the built-in checkout expires its overdue sessions, as Stripe does on its own
    (each sends ``checkout.session.expired``)."""
    if not settings.uses_builtin_stripe:
        return {}
    expired = builtin_gateway(settings, redis_client()).expire_overdue(now.timestamp())
    return {"builtin_checkouts_expired": expired}
