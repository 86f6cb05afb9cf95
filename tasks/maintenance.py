"""Periodic work run by beat."""

from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app

from app.db import utcnow
from app.extensions import redis_client
from app.services import health, maintenance

log = logging.getLogger(__name__)


@shared_task(name="tasks.maintenance.sweep", bind=True, ignore_result=True)
def sweep(self) -> dict[str, int]:
    """Record the worker heartbeat, then back up every time-critical job from the database."""
    settings = current_app.extensions["settings"]
    health.record_heartbeat(redis_client(), settings.celery_queue)
    with self.session_scope() as session:
        report = maintenance.pending_work(session, now=utcnow())
    log.info("sweep", extra=report)
    return report
