"""Stripe's part for the built-in Connect twin (``app.integrations.builtin_connect``): its events
reach the app's own webhook, signed as Stripe signs them."""

from __future__ import annotations

from typing import Any

import requests

from app.celery_app import chatlink_task
from app.integrations.payments import post_signed_event
from tasks import _runtime

WEBHOOK_PATH = "/api/webhooks/stripe"


class WebhookRejected(Exception):
    """The app answered a built-in event with something other than 2xx: Stripe would retry."""


# Backoff 1 s doubling to 10 min, 12 retries: about 40 minutes, like the built-in checkout's events.
@chatlink_task(retry_on=(requests.RequestException, WebhookRejected), max_retries=12, backoff=1)
def deliver_builtin_connect_event(event: dict[str, Any]) -> int:
    """Events of a connected account (they carry ``account``) are signed with the Connect endpoint's
    secret, the platform's own events (``transfer.reversed``) with the platform endpoint's."""
    settings = _runtime.settings()
    secret = settings.webhook_secrets[0]
    if event.get("account") and settings.stripe_connect_webhook_secret:
        secret = settings.stripe_connect_webhook_secret
    status = post_signed_event(settings.app_url + WEBHOOK_PATH, event, secret)
    if not 200 <= status < 300:
        raise WebhookRejected(f"{event.get('type')} {event.get('id')}: HTTP {status}")
    return status
