"""Seller payouts through Stripe Connect: send a payout's Transfer, run the weekly automatic
payouts, and play Stripe's part for the built-in Connect twin.

``send_transfer`` is repeat-safe (the row is locked and skipped once SENT or FAILED; Stripe's
idempotency key is derived from the payout id) and retries only what a later attempt can fix (a
transient ``PaymentError``, a lost database connection); the sweep publishes a transfer again if
every retry was lost. ``run_automatic_payouts`` runs hourly from beat; each seller gets at most one
automatic payout per ISO week however many beats run it.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import requests
from flask import current_app

from app.celery_app import chatlink_task
from app.config import Settings
from app.db import db, utcnow
from app.extensions import redis_client
from app.integrations.connect import PaymentError, connect_gateway
from app.integrations.payments import post_signed_event
from app.services import automatic_payouts, transfers

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/api/webhooks/stripe"


class WebhookRejected(Exception):
    """The app answered a built-in event with something other than 2xx: Stripe would retry."""


def _settings() -> Settings:
    settings: Settings = current_app.extensions["settings"]
    return settings


@chatlink_task(retry_on=(PaymentError,), max_retries=8)
def send_transfer(payout_id: str) -> str | None:
    settings = _settings()
    gateway = connect_gateway(settings, redis_client())
    with db.session_scope() as session:
        state = transfers.send_transfer(
            session, uuid.UUID(payout_id), gateway=gateway, app_env=settings.app_env, now=utcnow()
        )
    return state.value if state else None


@chatlink_task(max_retries=3)
def run_automatic_payouts() -> int:
    """Pay every seller on the weekly schedule whose payout for this week is still due; each
    seller in their own transaction, so one refusal does not hold back the others."""
    settings = _settings()
    now = utcnow()
    period = automatic_payouts.iso_period(now)
    with db.session_scope() as session:
        due = automatic_payouts.due_sellers(session, period)
    paid = 0
    for seller_id in due:
        try:
            with db.session_scope() as session:
                payout = automatic_payouts.run_automatic_payout(
                    session, seller_id, period=period, default_currency=settings.currency, now=now
                )
            paid += payout is not None
        except Exception:
            log.exception("automatic payout failed", extra={"seller_id": str(seller_id)})
    return paid


# Backoff 1 s doubling to 10 min, 12 retries: about 40 minutes, like the built-in checkout's events.
@chatlink_task(retry_on=(requests.RequestException, WebhookRejected), max_retries=12, backoff=1)
def deliver_builtin_connect_event(event: dict[str, Any]) -> int:
    """Post a built-in Connect event to the app's own webhook, signed as Stripe would: events of a
    connected account (they carry ``account``) with the Connect endpoint's secret, the platform's
    own events (``transfer.reversed``) with the platform endpoint's."""
    settings = _settings()
    secret = settings.webhook_secrets[0]
    if event.get("account") and settings.stripe_connect_webhook_secret:
        secret = settings.stripe_connect_webhook_secret
    status = post_signed_event(settings.app_url + WEBHOOK_PATH, event, secret)
    if not 200 <= status < 300:
        raise WebhookRejected(f"{event.get('type')} {event.get('id')}: HTTP {status}")
    return status
