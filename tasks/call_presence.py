"""The start of the clock, provider side (``app.services.call_presence``).

At start the web process moves Daily's room ``exp`` to ``ends_at`` itself, right after commit, so
that Daily ends the call even when no worker runs. When Daily does not answer then, this task
takes over, so the provider's own hard stop is not lost in exactly the case it exists for.
"""

from __future__ import annotations

import uuid

from app.celery_app import chatlink_task
from app.db import db
from app.queue import RetryLater
from tasks import _runtime


@chatlink_task(retry_on=(RetryLater,), max_retries=8, backoff=1, backoff_max=15)
def start_room(request_id: str) -> str:
    from app.services import call_presence

    with db.session_scope() as session:
        return call_presence.start_room(session, uuid.UUID(request_id), provider=_runtime.video())
