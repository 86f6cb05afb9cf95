"""Daily's side of the call (``app.services.daily_events``): its webhook inbox, processed after the
view committed the event, and the presence polled from its REST API where no webhook is configured.

``process_daily_event`` runs one inbox row (locked, skipped once handled, so a repeat is a no-op);
a lost database connection is retried, and the sweep re-publishes rows still unprocessed.
"""

from __future__ import annotations

import uuid

from app.celery_app import chatlink_task
from app.db import db, utcnow
from tasks import _runtime


@chatlink_task(max_retries=8)
def process_daily_event(event_row_id: str) -> str | None:
    from app.services import daily_events

    settings = _runtime.settings()
    with db.session_scope() as session:
        status = daily_events.process_event(
            session, uuid.UUID(event_row_id), duration_seconds=settings.call_duration_seconds, now=utcnow()
        )
    return status.value if status else None


@chatlink_task(max_retries=0)
def poll_daily_presence() -> dict[str, int]:
    """On beat, only when Daily is configured without a webhook secret: Daily's REST presence
    stands in for its webhooks. No retries: the next beat polls again."""
    from app.integrations.video import DailyVideo
    from app.services import daily_events

    settings = _runtime.settings()
    provider = _runtime.video()
    if settings.daily_webhook_secret or not isinstance(provider, DailyVideo):
        return {"daily_calls_polled": 0}
    with db.session_scope() as session:
        return daily_events.poll_presence(
            session, provider, duration_seconds=settings.call_duration_seconds, now=utcnow()
        )
