"""Periodic work run by beat: the heartbeat, and the sweep that backs up every time-critical job."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from datetime import datetime

from celery import shared_task
from flask import current_app
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import utcnow
from app.extensions import redis_client
from app.services import call_endings, email_delivery, health, maintenance, privacy, transfers
from app.services.request_payments import payment_followups
from app.services.requests import expire_pending_requests
from app.services.stripe_events import requeue_stuck_events
from tasks.payments import expire_builtin_checkouts

log = logging.getLogger(__name__)

# Each step finds work that a lost message or a dead worker left undone and does it (or
# re-enqueues it). Every step is idempotent and runs in its own transaction, so one failing step
# does not hold back the others, and two beats running at once are harmless.
SweepStep = Callable[[Session, datetime, Settings], dict[str, int]]
SWEEP_STEPS: tuple[SweepStep, ...] = (
    # Ending overdue calls comes first: it is the step the product's promise depends on.
    call_endings.end_overdue_calls,
    call_endings.apply_no_shows,
    call_endings.recover_call_work,
    maintenance.pending_work,
    email_delivery.requeue_due_emails,
    expire_pending_requests,
    payment_followups,
    requeue_stuck_events,
    transfers.resend_stuck_transfers,
    expire_builtin_checkouts,
    privacy.scrub_farewell_emails,
)


@shared_task(name="tasks.maintenance.sweep", bind=True, ignore_result=True)
def sweep(self) -> dict[str, int]:  # type: ignore[no-untyped-def]
    settings = current_app.extensions["settings"]
    health.record_heartbeat(redis_client(), settings.celery_queue)
    report: dict[str, int] = {}
    for step in SWEEP_STEPS:
        try:
            with self.session_scope() as session:
                report.update(step(session, utcnow(), settings))
        except Exception:
            log.exception("sweep step failed", extra={"step": step.__name__})
    # Every 5 seconds: log the sweep only when it found something (the pending counts are gauges).
    found = any(count for name, count in report.items() if not name.endswith("_pending"))
    log.log(logging.INFO if found else logging.DEBUG, "sweep", extra=report)
    return report


@shared_task(name="tasks.maintenance.ping", ignore_result=False)
def ping() -> dict[str, object]:
    """Answer from a worker: ``flask chatlink ping-worker`` uses it to prove the queue works."""
    return {"pong": True, "at": time.time(), "host": socket.gethostname()}
