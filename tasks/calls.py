"""The room of an accepted call: provisioned once the payment is captured (``app.services.calls``).

Repeat-safe (a deterministic room name, a conditional UPDATE), which ``acks_late`` redelivery and
the sweep's re-publishing (``call_endings.recover_call_work``) rely on.
"""

from __future__ import annotations

import uuid

from app.celery_app import chatlink_task
from app.db import db, utcnow
from app.queue import RetryLater
from tasks import _runtime


# About six minutes of retries; then the sweep re-publishes while the join window lasts.
@chatlink_task(retry_on=(RetryLater,), max_retries=10, backoff=2, backoff_max=60)
def provision_room(request_id: str) -> str:
    from app.services import calls

    config = calls.CallConfig.from_settings(_runtime.settings())
    with db.session_scope() as session:
        return calls.provision_room(
            session, uuid.UUID(request_id), provider=_runtime.video(), config=config, now=utcnow()
        )
