"""A paid request from its creation to the seller's decision: open, accept (now or for one of the
buyer's proposed times), decline, cancel, expire.

Each function is one move of the table (``table.py``), made by one conditional UPDATE, with its
audit row, the tasks it publishes after commit and the emails it queues, together. The gateway
is never called here: capture and release are tasks (``tasks.request_payments``), so a web
request never waits on Stripe and a rollback never leaves money moved.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.orm import Session

from app import metrics
from app.config import Settings
from app.db import on_commit
from app.formats import iso
from app.models import CallRequest, CancelReason, RequestStatus, User
from app.queue import enqueue_after_commit
from app.refusals import Conflict, Forbidden, Invalid, NotFound
from app.services.audit import record_event, user_actor
from app.services.lifecycle import invitations
from app.services.lifecycle._moves import announce, any_request, due_batch, move_request, move_requests, require_request
from app.services.lifecycle.notices import email_context, notify
from app.services.scheduling import ScheduleConfig, first_reminder, join_opens, pending_deadline
from app.services.sweeping import Moment, looks_for
from tasks import request_payments as payment_tasks

SYSTEM = "system"
EXPIRY_BATCH = 200
DECLINE_MESSAGE_MAX = 500


def open_request(
    session: Session,
    *,
    seller_id: uuid.UUID,
    transaction_id: uuid.UUID,
    buyer_email: str,
    note: str,
    refused: CancelReason | None,
    request_ttl_seconds: int,
    now: datetime,
    proposed_starts: Sequence[datetime] = (),
    buyer_time_zone: str | None = None,
    capture_before: datetime | None = None,
) -> CallRequest:
    """The paid request, as the verified webhook creates it: PENDING for the seller to decide, or
    CANCELLED at once (``refused``: the buyer is blocked, the seller suspended) with the hold
    released after commit and only the buyer told.

    A request for as soon as possible expires after ``request_ttl_seconds``; one with proposed
    times once the last of them has passed, or earlier when the hold would lapse first."""
    if proposed_starts:
        expires_at = pending_deadline(proposed_starts, capture_before=capture_before)
    else:
        expires_at = now + timedelta(seconds=request_ttl_seconds)
    call_request = CallRequest(
        id=uuid.uuid4(),
        seller_id=seller_id,
        transaction_id=transaction_id,
        buyer_email=buyer_email,
        note=note,
        status=RequestStatus.CANCELLED if refused else RequestStatus.PENDING,
        cancel_reason=refused,
        cancelled_at=now if refused else None,
        created_at=now,
        expires_at=expires_at,
        proposed_starts=sorted(proposed_starts),
        buyer_time_zone=buyer_time_zone,
    )
    session.add(call_request)
    session.flush()
    announce(session, [call_request.id])  # the seller's dashboard shows it, the buyer's page moves on
    if refused is not None:
        record_event(session, "request.cancelled", ref_id=call_request.id, actor=SYSTEM, payload={"reason": refused})
        enqueue_after_commit(session, payment_tasks.release_hold, str(call_request.id))
    return call_request


def accept_request(
    session: Session,
    request_id: uuid.UUID,
    *,
    seller_id: uuid.UUID,
    now: datetime,
    join_window_seconds: int,
    start_at: datetime | None = None,
    schedule: ScheduleConfig | None = None,
) -> CallRequest:
    """PENDING → ACCEPTED. The hold is captured by a task after commit, which then provisions the
    room. With ``start_at`` (one of the buyer's proposed times) the call is for then
    (``accept_for_later``); without, for right now, as it always was."""
    if start_at is not None:
        if schedule is None:
            raise ValueError("a call accepted for later needs the schedule's settings")
        return _accept_for_later(session, request_id, seller_id, start_at.astimezone(UTC), now, schedule)
    _decide(
        session,
        "accept",
        request_id,
        seller_id,
        now,
        accepted_at=now,
        join_opens_at=now,
        join_deadline=now + timedelta(seconds=join_window_seconds),
        # Each party's join credential is derived from this key (app.services.calls).
        join_key=secrets.token_urlsafe(32),
    )
    record_event(session, "request.accepted", ref_id=request_id, actor=user_actor(seller_id))
    on_commit(session, metrics.request_accepted)
    enqueue_after_commit(session, payment_tasks.capture_accepted, str(request_id))
    return require_request(session, request_id)


def _accept_for_later(
    session: Session,
    request_id: uuid.UUID,
    seller_id: uuid.UUID,
    start: datetime,
    now: datetime,
    config: ScheduleConfig,
) -> CallRequest:
    """PENDING → ACCEPTED for ``start``: the capture still happens now (a task after commit); the
    room opens shortly before the start, the no-show rules count from the start, and both
    parties get the invitation, with the reminders set."""
    proposed = session.scalar(
        select(CallRequest.proposed_starts).where(CallRequest.id == request_id, CallRequest.seller_id == seller_id)
    )
    if proposed is None:
        raise NotFound("not_found", "No such request.")
    if start not in proposed:
        raise Invalid("not_proposed", "Pick one of the times the buyer proposed.", field="startAt")
    if start <= now:
        raise Conflict("time_passed", "That time has passed. Pick a later one, or accept for right now.")
    _decide(
        session,
        "accept_for_later",
        request_id,
        seller_id,
        now,
        CallRequest.proposed_starts.contains([start]),
        accepted_at=now,
        scheduled_start=start,
        join_opens_at=join_opens(start, now=now, config=config),
        join_deadline=start + config.join_window,
        join_key=secrets.token_urlsafe(32),
        next_reminder_at=first_reminder(start, now=now),
    )
    record_event(
        session, "request.accepted", ref_id=request_id, actor=user_actor(seller_id), payload={"start": iso(start)}
    )
    on_commit(session, metrics.request_accepted)
    enqueue_after_commit(session, payment_tasks.capture_accepted, str(request_id))
    call = require_request(session, request_id)
    invitations.send_invitations(session, call, cause="call_scheduled", method="REQUEST", config=config, now=now)
    return call


def decline_request(
    session: Session, request_id: uuid.UUID, *, seller_id: uuid.UUID, now: datetime, message: str = ""
) -> CallRequest:
    """PENDING → DECLINED; the hold is released by a task after commit and the buyer is told,
    with the seller's ``message`` to them if they wrote one (it lives in the email only)."""
    message = clean_decline_message(message)
    _decide(session, "decline", request_id, seller_id, now, declined_at=now)
    _after_decline(session, request_id, actor=user_actor(seller_id), message=message)
    on_commit(session, metrics.request_declined)
    return require_request(session, request_id)


def clean_decline_message(message: str) -> str:
    """The seller's words to the buyer, trimmed; ``Invalid`` past DECLINE_MESSAGE_MAX characters."""
    text = "\n".join(line.rstrip() for line in message.replace("\r\n", "\n").split("\n")).strip()
    if len(text) > DECLINE_MESSAGE_MAX:
        raise Invalid("too_long", f"Keep the message under {DECLINE_MESSAGE_MAX} characters.", field="message")
    return text


def buyer_cancel_pending(session: Session, request_id: uuid.UUID, *, now: datetime) -> CallRequest:
    """PENDING → CANCELLED (buyer_cancelled): the buyer withdraws before the seller answered. The
    hold is released by a task right after commit; both are told. The caller has checked that
    this is the buyer (the browser that paid)."""
    values = {"cancel_reason": CancelReason.BUYER_CANCELLED, "cancelled_at": now}
    if not move_request(session, "buyer_cancel_pending", request_id, now=now, values=values):
        status = session.scalar(select(CallRequest.status).where(CallRequest.id == request_id))
        if status is None:
            raise NotFound("not_found", "No such request.")
        if status == RequestStatus.ACCEPTED:
            raise Conflict("already_accepted", "The seller accepted just now: your call is ready to join.")
        raise Conflict("not_pending", "This request is no longer waiting for an answer, so it cannot be cancelled.")
    record_event(session, "request.cancelled", ref_id=request_id, actor="buyer", payload={"reason": "buyer_cancelled"})
    enqueue_after_commit(session, payment_tasks.release_hold, str(request_id))
    notify(session, require_request(session, request_id), "request_withdrawn")
    return require_request(session, request_id)


def decline_all_pending(session: Session, seller_id: uuid.UUID, *, now: datetime, actor: str) -> list[uuid.UUID]:
    """PENDING → DECLINED for every request of the seller (suspended, or deleting their account),
    in ONE conditional UPDATE: a request the seller accepts at the same moment is either accepted
    or declined, never both. Each buyer gets the ordinary "declined" email."""
    declined = move_requests(
        session, "decline", CallRequest.seller_id == seller_id, now=now, values={"declined_at": now}
    )
    for request_id in declined:
        _after_decline(session, request_id, actor=actor)
    return declined


def cancel_pending_from(
    session: Session, seller_id: uuid.UUID, buyer_email: str, *, now: datetime, actor: str
) -> list[uuid.UUID]:
    """PENDING → CANCELLED (blocked) for the seller's requests from ``buyer_email``. The buyer gets
    the ordinary "declined" email, which does not say they were blocked."""
    cancelled = move_requests(
        session,
        "cancel_pending",
        CallRequest.seller_id == seller_id,
        CallRequest.buyer_email == buyer_email,
        now=now,
        values={"cancel_reason": CancelReason.BLOCKED, "cancelled_at": now},
    )
    for request_id in cancelled:
        record_event(session, "request.cancelled", ref_id=request_id, actor=actor, payload={"reason": "blocked"})
        enqueue_after_commit(session, payment_tasks.release_hold, str(request_id))
        notify(session, require_request(session, request_id), "request_declined", parties=("buyer",))
    return cancelled


def _expired(now: Moment) -> tuple[ColumnElement[bool], ...]:
    return (CallRequest.status == RequestStatus.PENDING, CallRequest.expires_at <= now)


@looks_for(lambda now: any_request(*_expired(now)))
def expire_pending_requests(session: Session, now: datetime, settings: Settings) -> dict[str, int]:
    """Sweep step: PENDING past ``expires_at`` → CANCELLED (expired), hold released, both emailed.

    Rows locked by a concurrent accept are skipped (``SKIP LOCKED``); the accept decides them, and
    if it loses to ``expires_at`` the next sweep takes them. A batch per run keeps the transaction short.
    """
    expired = move_requests(
        session,
        "expire",
        due_batch(*_expired(now), limit=EXPIRY_BATCH),
        now=now,
        values={"cancel_reason": CancelReason.EXPIRED, "cancelled_at": now},
    )
    for request_id in expired:
        record_event(session, "request.expired", ref_id=request_id, actor=SYSTEM)
        enqueue_after_commit(session, payment_tasks.release_hold, str(request_id))
        notify(session, require_request(session, request_id), "request_expired")
    on_commit(session, lambda: metrics.requests_expired(len(expired)))
    return {"requests_expired": len(expired)}


def _decide(
    session: Session,
    move: str,
    request_id: uuid.UUID,
    seller_id: uuid.UUID,
    now: datetime,
    *conditions: ColumnElement[bool],
    **values: object,
) -> None:
    """The seller's move on their own PENDING request, while it has not expired and they may sell."""
    moved = move_request(
        session,
        move,
        request_id,
        CallRequest.seller_id == seller_id,
        CallRequest.expires_at > now,
        ~_suspended(seller_id),
        *conditions,
        now=now,
        values=values,
    )
    if not moved:
        raise _refusal(session, request_id, seller_id)


def _suspended(seller_id: uuid.UUID) -> ColumnElement[bool]:
    return exists().where(User.id == seller_id, User.suspended_at.is_not(None))


def _after_decline(session: Session, request_id: uuid.UUID, *, actor: str, message: str = "") -> None:
    record_event(session, "request.declined", ref_id=request_id, actor=actor, payload={"message": bool(message)})
    enqueue_after_commit(session, payment_tasks.release_hold, str(request_id))
    call_request = require_request(session, request_id)
    context = email_context(session, call_request) | {"seller_message": message}
    notify(session, call_request, "request_declined", parties=("buyer",), context=context)


def _refusal(session: Session, request_id: uuid.UUID, seller_id: uuid.UUID) -> Exception:
    """Why the conditional UPDATE matched nothing, read after it (so after any winner committed)."""
    current = session.execute(
        select(CallRequest.seller_id, CallRequest.status).where(CallRequest.id == request_id)
    ).one_or_none()
    if current is None or current.seller_id != seller_id:
        return NotFound("not_found", "No such request.")
    if session.scalar(select(_suspended(seller_id))):
        return Forbidden("suspended", "Your account is suspended, so you cannot take or decline calls.")
    if current.status == RequestStatus.PENDING:
        return Conflict("expired", "This request has expired; the buyer's payment is being released.")
    messages = {
        RequestStatus.ACCEPTED: ("already_accepted", "This request was already accepted."),
        RequestStatus.DECLINED: ("already_declined", "This request was already declined."),
        RequestStatus.CANCELLED: ("cancelled", "This request was cancelled."),
        RequestStatus.COMPLETED: ("completed", "This call has already taken place."),
    }
    return Conflict(*messages[current.status])
