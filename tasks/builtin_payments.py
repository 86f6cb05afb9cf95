"""Stripe's part for the built-in test-mode checkout (``app.integrations.builtin_payments``).

``deliver_builtin_webhook`` posts a built-in event to the app's own webhook, signed, retrying with
backoff like Stripe until the app answers 2xx; the sweep step ``expire_builtin_checkouts``
expires overdue sessions as Stripe does on its own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import requests
from sqlalchemy.orm import Session

from app.celery_app import chatlink_task
from app.config import Settings
from app.extensions import redis_client
from app.integrations.builtin_payments import builtin_gateway
from app.integrations.payments import post_signed_event
from tasks import _runtime

WEBHOOK_PATH = "/api/webhooks/stripe"


class WebhookRejected(Exception):
    """The app answered a built-in event with something other than 2xx: Stripe would retry."""


# Backoff 1 s doubling to 10 min, 12 retries: about 40 minutes of attempts (Stripe retries for days
# in live mode, a few times over hours in test mode; this is a development twin).
@chatlink_task(retry_on=(requests.RequestException, WebhookRejected), max_retries=12, backoff=1)
def deliver_builtin_webhook(event: dict[str, Any]) -> int:
    settings = _runtime.settings()
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
