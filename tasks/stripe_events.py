"""Processing the Stripe webhook inbox (``app.services.stripe_events``).

``process_stripe_event`` runs one inbox row (repeat-safe: the row is locked and skipped once
handled). Only errors a later attempt can fix are retried: a gateway outage (a transient
``PaymentError``; the service marks permanent ones FAILED) or a lost database connection; the sweep
re-publishes whatever is still unprocessed after a minute.
"""

from __future__ import annotations

import uuid

from app.celery_app import chatlink_task
from app.db import db, utcnow
from app.integrations.payments import PaymentError
from tasks import _runtime


@chatlink_task(retry_on=(PaymentError,), max_retries=8)
def process_stripe_event(event_row_id: str) -> str | None:
    from app.services import stripe_events

    settings = _runtime.settings()
    gateway = _runtime.payments()
    with db.session_scope() as session:
        status = stripe_events.process_event(
            session,
            uuid.UUID(event_row_id),
            gateway=gateway,
            app_env=settings.app_env,
            platform_fee_bps=settings.platform_fee_bps,
            request_ttl_seconds=settings.request_ttl_seconds,
            now=utcnow(),
            connect=_runtime.connect(),
        )
    return status.value if status else None
