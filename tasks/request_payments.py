"""Money after the seller's decision (``app.services.request_payments``): capture the hold on
accept, release it on decline or expiry.

Both are repeat-safe (deterministic idempotency keys, conditional UPDATEs), which ``acks_late``
redelivery and the sweep's re-publishing (``payment_followups``) rely on. A refusal by the
gateway is decided by the service, not retried; an outage (``RetryLater``) is.
"""

from __future__ import annotations

import uuid

from app.celery_app import chatlink_task
from app.db import db, utcnow
from app.queue import RetryLater
from tasks import _runtime


# About eight minutes of retries in all; then the sweep re-publishes while the join window lasts.
@chatlink_task(retry_on=(RetryLater,), max_retries=8)
def capture_accepted(request_id: str) -> str:
    from app.services import request_payments

    gateway = _runtime.payments()
    with db.session_scope() as session:
        return request_payments.capture_accepted_payment(session, uuid.UUID(request_id), gateway=gateway, now=utcnow())


@chatlink_task(retry_on=(RetryLater,), max_retries=10)
def release_hold(request_id: str) -> str:
    from app.services import request_payments

    gateway = _runtime.payments()
    with db.session_scope() as session:
        return request_payments.release_payment(session, uuid.UUID(request_id), gateway=gateway, now=utcnow())
