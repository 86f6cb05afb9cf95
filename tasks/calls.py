"""The call's tasks: provision the room, move its expiry at start, end the call, delete the room,
refund a seller's no-show.

All are repeat-safe (conditional UPDATEs, deterministic room names and idempotency keys), which
``acks_late`` redelivery and the sweep's re-publishing rely on. Only errors that a later attempt
can fix are retried, with exponential backoff and jitter: a vendor outage (``RetryLater``) or a
lost database connection. The end of a call does not depend on these retries: the sweep ends
anything overdue every few seconds, and Daily's room expires at ``ends_at`` on its own.
"""

from __future__ import annotations

import uuid

from celery import shared_task
from flask import current_app
from sqlalchemy.exc import OperationalError

from app.db import utcnow
from app.extensions import redis_client
from app.integrations.video import VideoProvider, video_provider
from app.services import call_endings, calls
from app.services.calls import CallConfig, RetryLater

RETRYABLE = (RetryLater, OperationalError)


def provider() -> VideoProvider:
    return video_provider(current_app.extensions["settings"])


def config() -> CallConfig:
    return CallConfig.from_settings(current_app.extensions["settings"])


@shared_task(
    name="tasks.calls.provision_room",
    bind=True,
    ignore_result=True,
    autoretry_for=RETRYABLE,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=10,  # about six minutes; then the sweep re-publishes while the join window lasts
)
def provision_room(self, request_id: str) -> str:  # type: ignore[no-untyped-def]
    with self.session_scope() as session:
        return calls.provision_room(session, uuid.UUID(request_id), provider=provider(), config=config(), now=utcnow())


@shared_task(
    name="tasks.calls.start_room",
    bind=True,
    ignore_result=True,
    autoretry_for=RETRYABLE,
    retry_backoff=1,
    retry_backoff_max=15,
    retry_jitter=True,
    max_retries=8,
)
def start_room(self, request_id: str) -> str:  # type: ignore[no-untyped-def]
    with self.session_scope() as session:
        return calls.start_room(session, uuid.UUID(request_id), provider=provider())


@shared_task(
    name="tasks.calls.end_call",
    bind=True,
    ignore_result=True,
    autoretry_for=RETRYABLE,
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=12,
)
def end_call(self, request_id: str, ended_by: str = "timer") -> str:  # type: ignore[no-untyped-def]
    """Published with ``eta=ends_at``. The end and the room's deletion are two units of work: the
    end commits first, so a Daily outage delays the deletion (retried here), never the end. The
    deletion is done here rather than by another task so that it does not queue behind the
    emails the end has just published."""
    call_id = uuid.UUID(request_id)
    with self.session_scope() as session:
        outcome = call_endings.end_call(
            session, call_id, ended_by=ended_by, config=config(), now=utcnow(), release_room_later=False
        )
        ends_at = calls.load_call(session, call_id).ends_at if outcome == "not_due" else None  # type: ignore[union-attr]
    if ends_at is not None:
        # Woke before ends_at (the clocks of two machines disagree): come back on time.
        self.apply_async((request_id, ended_by), eta=ends_at)
        return outcome
    with self.session_scope() as session:
        call_endings.release_room(session, call_id, provider=provider(), now=utcnow())
    return outcome


@shared_task(
    name="tasks.calls.release_room",
    bind=True,
    ignore_result=True,
    autoretry_for=RETRYABLE,
    retry_backoff=1,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=10,
)
def release_room(self, request_id: str) -> str:  # type: ignore[no-untyped-def]
    with self.session_scope() as session:
        return call_endings.release_room(session, uuid.UUID(request_id), provider=provider(), now=utcnow())


@shared_task(
    name="tasks.calls.refund_no_show",
    bind=True,
    ignore_result=True,
    autoretry_for=RETRYABLE,
    retry_backoff=2,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=10,
)
def refund_no_show(self, request_id: str) -> str:  # type: ignore[no-untyped-def]
    from app.integrations.payments import payment_gateway

    gateway = payment_gateway(current_app.extensions["settings"], redis_client())
    with self.session_scope() as session:
        return call_endings.refund_seller_no_show(session, uuid.UUID(request_id), gateway=gateway, now=utcnow())
