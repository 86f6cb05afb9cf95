"""Sending payouts to Connect sellers as Stripe Transfers (``app.services.transfers``).

``send_transfer`` is repeat-safe: the row is locked and skipped once SENT, FAILED or REVERSED, and
Stripe's idempotency key is derived from the payout id, so a redelivered message or a second worker
never makes a second Transfer. Only what a later attempt can fix is retried (a transient
``PaymentError``, a lost database connection); if every retry is lost, the sweep publishes the
transfer again (``transfers.resend_stuck_transfers``).
"""

from __future__ import annotations

import uuid

from app.celery_app import chatlink_task
from app.db import db, utcnow
from app.integrations.payments import PaymentError
from tasks import _runtime


@chatlink_task(retry_on=(PaymentError,), max_retries=8)
def send_transfer(payout_id: str) -> str | None:
    from app.services import transfers

    settings = _runtime.settings()
    gateway = _runtime.connect()
    with db.session_scope() as session:
        state = transfers.send_transfer(
            session, uuid.UUID(payout_id), gateway=gateway, app_env=settings.app_env, now=utcnow()
        )
    return state.value if state else None
