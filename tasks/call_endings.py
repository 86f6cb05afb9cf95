"""The end of a call and what follows it (``app.services.call_endings``): end it on time, delete
its room, give the buyer what the settlement owes them.

All are repeat-safe (conditional UPDATEs, idempotency keys). The end of a call does not depend on
these retries: the sweep ends anything overdue every few seconds, and Daily's room expires at
``ends_at`` on its own.
"""

from __future__ import annotations

import uuid

from app.celery_app import chatlink_task
from app.db import db, utcnow
from app.queue import RetryLater
from tasks import _runtime


@chatlink_task(retry_on=(RetryLater,), max_retries=12, backoff=1, backoff_max=30)
def end_call(request_id: str, ended_by: str = "timer") -> str:
    """Published with ``eta=ends_at``. The end and the room's deletion are two units of work: the
    end commits first, so a Daily outage delays the deletion (retried here), never the end. The
    deletion is done here rather than by another task so that it does not queue behind the
    emails the end has just published."""
    from app.services import call_endings, calls
    from app.services.lifecycle import load_request

    call_id = uuid.UUID(request_id)
    config = calls.CallConfig.from_settings(_runtime.settings())
    with db.session_scope() as session:
        outcome = call_endings.end_call(
            session, call_id, ended_by=ended_by, config=config, now=utcnow(), release_room_later=False
        )
        call = load_request(session, call_id) if outcome == "not_due" else None
        ends_at = call.ends_at if call is not None else None
    if ends_at is not None:
        # Woke before ends_at (the clocks of two machines disagree): come back on time.
        end_call.apply_async((request_id, ended_by), eta=ends_at)
        return outcome
    with db.session_scope() as session:
        call_endings.release_room(session, call_id, provider=_runtime.video(), now=utcnow())
    return outcome


@chatlink_task(retry_on=(RetryLater,), max_retries=10, backoff=1, backoff_max=60)
def release_room(request_id: str) -> str:
    from app.services import call_endings

    with db.session_scope() as session:
        return call_endings.release_room(session, uuid.UUID(request_id), provider=_runtime.video(), now=utcnow())


@chatlink_task(retry_on=(RetryLater,), max_retries=10, backoff=2)
def refund_buyer(request_id: str) -> str:
    """What the call's settlement gives back: all of it (a seller no-show, a technical failure)
    or the unused share (the seller ended early)."""
    from app.services import call_endings

    gateway = _runtime.payments()
    with db.session_scope() as session:
        return call_endings.refund_buyer(session, uuid.UUID(request_id), gateway=gateway, now=utcnow())
