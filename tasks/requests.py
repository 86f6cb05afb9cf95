"""Money after the seller's decision: capture the hold on accept, release it on decline or expiry.

Both tasks are repeat-safe (deterministic idempotency keys, conditional UPDATEs), which is what
``acks_late`` redelivery and the sweep's re-publishing (``payment_followups``) rely on. Only
errors a later attempt can fix are retried: a gateway outage (``GatewayUnavailable``) or a lost
database connection. A refusal is decided by the service, not retried.
"""

from __future__ import annotations

import uuid

from celery import shared_task
from flask import current_app
from sqlalchemy.exc import OperationalError

from app.celery_app import RETRY_BACKOFF_MAX
from app.db import utcnow
from app.extensions import redis_client
from app.integrations.payments import PaymentGateway, payment_gateway
from app.services import request_payments
from app.services.request_payments import GatewayUnavailable

RETRYABLE = (GatewayUnavailable, OperationalError)


def gateway() -> PaymentGateway:
    """The configured gateway: Stripe when STRIPE_SECRET_KEY is set, the built-in checkout otherwise."""
    return payment_gateway(current_app.extensions["settings"], redis_client())


@shared_task(
    name="tasks.requests.capture_accepted",
    bind=True,
    ignore_result=True,
    autoretry_for=RETRYABLE,
    retry_backoff=2,
    retry_backoff_max=RETRY_BACKOFF_MAX,
    retry_jitter=True,
    # About eight minutes of retries in all; then the sweep re-publishes while the join window lasts.
    max_retries=8,
)
def capture_accepted(self, request_id: str) -> str:  # type: ignore[no-untyped-def]
    payments = gateway()
    with self.session_scope() as session:
        return request_payments.capture_accepted_payment(session, uuid.UUID(request_id), gateway=payments, now=utcnow())


@shared_task(
    name="tasks.requests.release_hold",
    bind=True,
    ignore_result=True,
    autoretry_for=RETRYABLE,
    retry_backoff=2,
    retry_backoff_max=RETRY_BACKOFF_MAX,
    retry_jitter=True,
    max_retries=10,
)
def release_hold(self, request_id: str) -> str:  # type: ignore[no-untyped-def]
    payments = gateway()
    with self.session_scope() as session:
        return request_payments.release_payment(session, uuid.UUID(request_id), gateway=payments, now=utcnow())
