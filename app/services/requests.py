"""The seller's decision on a paid call request: list, accept, decline, and expiry.

Every transition is ONE conditional UPDATE from the state it leaves (``... WHERE status =
'PENDING'``), so a double click, two tabs or a click racing the expiry sweep cannot both win: the
loser matches no row and gets ``RequestConflict`` (409) with nothing changed. A PENDING request
whose ``expires_at`` has passed is treated as expired even before the sweep has run.

No payment gateway is called here. Accept and decline publish tasks after commit
(``tasks.request_payments.capture_accepted`` / ``release_hold``, see ``app.services.request_payments``),
so a web request never waits on Stripe and a rollback never leaves money moved.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, joinedload

from app import metrics
from app.config import Settings
from app.db import on_commit
from app.models import CallRequest, CancelReason, PaymentState, Profile, RequestStatus, User
from app.queue import enqueue_after_commit
from app.services.audit import record_event, user_actor
from app.services.outbox import queue_email
from tasks import request_payments as payment_tasks

LIST_LIMIT = 200
EXPIRY_BATCH = 200
SYSTEM = "system"

_CURRENCY_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "cad": "CA$", "aud": "A$"}


class RequestNotFound(LookupError):
    """No such request, or it belongs to another seller: both answer 404, so an id reveals nothing."""


class RequestConflict(Exception):
    """The request is no longer PENDING (or has expired): someone else's transition won."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def parse_status(value: str | None) -> RequestStatus | None:
    """``"pending"`` / ``"PENDING"`` → ``RequestStatus.PENDING``; empty or ``"all"`` → None.
    Raises ``ValueError`` for anything else."""
    text = (value or "").strip().upper()
    if text in ("", "ALL"):
        return None
    return RequestStatus(text)


def list_requests(
    session: Session, seller_id: uuid.UUID, status: RequestStatus | None = None, *, limit: int = LIST_LIMIT
) -> list[CallRequest]:
    """The seller's requests, newest first, with their transactions (one query)."""
    query = (
        select(CallRequest)
        .options(joinedload(CallRequest.transaction))
        .where(CallRequest.seller_id == seller_id)
        .order_by(CallRequest.created_at.desc(), CallRequest.id)
        .limit(limit)
    )
    if status is not None:
        query = query.where(CallRequest.status == status)
    return list(session.scalars(query))


def accept_request(
    session: Session, request_id: uuid.UUID, *, seller_id: uuid.UUID, now: datetime, join_window_seconds: int
) -> CallRequest:
    """PENDING → ACCEPTED. The hold is captured by a task after commit, which then provisions the room."""
    _transition(
        session,
        request_id,
        seller_id=seller_id,
        now=now,
        values={
            "status": RequestStatus.ACCEPTED,
            "accepted_at": now,
            "join_deadline": now + timedelta(seconds=join_window_seconds),
            # Each party's join credential is derived from this key (app.services.calls).
            "join_key": secrets.token_urlsafe(32),
        },
    )
    record_event(session, "request.accepted", ref_id=request_id, actor=user_actor(seller_id))
    on_commit(session, metrics.request_accepted)
    enqueue_after_commit(session, payment_tasks.capture_accepted, str(request_id))
    return _reload(session, request_id)


def decline_request(session: Session, request_id: uuid.UUID, *, seller_id: uuid.UUID, now: datetime) -> CallRequest:
    """PENDING → DECLINED; the hold is released by a task after commit and the buyer is told."""
    _transition(
        session,
        request_id,
        seller_id=seller_id,
        now=now,
        values={"status": RequestStatus.DECLINED, "declined_at": now},
    )
    record_event(session, "request.declined", ref_id=request_id, actor=user_actor(seller_id))
    on_commit(session, metrics.request_declined)
    enqueue_after_commit(session, payment_tasks.release_hold, str(request_id))
    call_request = _reload(session, request_id)
    queue_email(
        session,
        recipient=call_request.buyer_email,
        template="request_declined_buyer",
        context=email_context(session, call_request),
        dedupe_key=f"request_declined:buyer:{request_id}",
    )
    return call_request


def expire_pending_requests(session: Session, now: datetime, settings: Settings) -> dict[str, int]:
    """Sweep step: PENDING past ``expires_at`` → CANCELLED (expired), hold released, both emailed.

    Rows locked by a concurrent accept are skipped (``SKIP LOCKED``); the accept decides them, and
    if it loses to ``expires_at`` the next sweep takes them. A batch per run keeps the transaction short.
    """
    due = (
        select(CallRequest.id)
        .where(CallRequest.status == RequestStatus.PENDING, CallRequest.expires_at <= now)
        .order_by(CallRequest.expires_at)
        .limit(EXPIRY_BATCH)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(CallRequest)
        .where(CallRequest.id.in_(due.scalar_subquery()), CallRequest.status == RequestStatus.PENDING)
        .values(
            status=RequestStatus.CANCELLED,
            cancel_reason=CancelReason.EXPIRED,
            cancelled_at=now,
            updated_at=now,
        )
        .returning(CallRequest.id)
        .execution_options(synchronize_session=False)
    )
    expired_ids = list(session.scalars(statement))
    for request_id in expired_ids:
        record_event(session, "request.expired", ref_id=request_id, actor=SYSTEM)
        enqueue_after_commit(session, payment_tasks.release_hold, str(request_id))
        _notify_both(session, _reload(session, request_id), "request_expired")
    on_commit(session, lambda: metrics.requests_expired(len(expired_ids)))
    return {"requests_expired": len(expired_ids)}


def mark_payment_failed(session: Session, request_id: uuid.UUID, *, now: datetime, code: str | None = None) -> bool:
    """ACCEPTED → CANCELLED (payment_failed) after a capture the gateway refused for good.

    Both parties are told and whatever is left of the hold is released. False (and nothing
    changes) when the request is no longer ACCEPTED: a repeated task is a no-op.
    """
    statement = (
        update(CallRequest)
        .where(CallRequest.id == request_id, CallRequest.status == RequestStatus.ACCEPTED)
        .values(
            status=RequestStatus.CANCELLED,
            cancel_reason=CancelReason.PAYMENT_FAILED,
            cancelled_at=now,
            updated_at=now,
        )
        .returning(CallRequest.id)
        .execution_options(synchronize_session=False)
    )
    if session.execute(statement).scalar_one_or_none() is None:
        return False
    record_event(session, "request.payment_failed", ref_id=request_id, actor=SYSTEM, payload={"code": code})
    enqueue_after_commit(session, payment_tasks.release_hold, str(request_id))
    _notify_both(session, _reload(session, request_id), "payment_failed")
    return True


def accepted_join_url(call_request: CallRequest, party: str, *, app_url: str, secret_key: str) -> str | None:
    """A party's link to the call page while the request is ACCEPTED; None otherwise.
    The credential itself is ``app.services.calls``'s business."""
    if call_request.status != RequestStatus.ACCEPTED or not call_request.join_key:
        return None
    # Imported here because app.services.calls builds on this module (email_context).
    from app.services.calls import join_url

    return join_url(app_url, secret_key, call_request, party)


def serialize_request(call_request: CallRequest, *, join_url: str | None = None) -> dict[str, Any]:
    """The API's shape (DESIGN.md): camelCase keys, ISO-8601 UTC times, integer cents."""
    transaction = call_request.transaction
    return {
        "id": str(call_request.id),
        "status": call_request.status.value,
        "buyerEmail": call_request.buyer_email,
        "note": call_request.note,
        "grossCents": transaction.gross_cents,
        "netCents": transaction.net_cents,
        "currency": transaction.currency,
        "createdAt": _iso(call_request.created_at),
        "expiresAt": _iso(call_request.expires_at),
        "acceptedAt": _iso(call_request.accepted_at),
        "startedAt": _iso(call_request.started_at),
        "endsAt": _iso(call_request.ends_at),
        "endedAt": _iso(call_request.ended_at),
        "cancelReason": call_request.cancel_reason.value if call_request.cancel_reason else None,
        "joinUrl": join_url,
    }


def format_money(cents: int, currency: str) -> str:
    """``1050, "usd"`` → ``"$10.50"``; currencies without a symbol here read ``"10.50 SEK"``."""
    amount = f"{cents // 100:,}.{cents % 100:02d}"
    symbol = _CURRENCY_SYMBOLS.get(currency.lower())
    return f"{symbol}{amount}" if symbol else f"{amount} {currency.upper()}"


def email_context(session: Session, call_request: CallRequest) -> dict[str, Any]:
    """What every request email may say. JSON-safe: it is stored in the outbox row."""
    transaction = call_request.transaction
    seller = _seller(session, call_request.seller_id)
    return {
        "request_id": str(call_request.id),
        "seller_name": seller["name"],
        "buyer_email": call_request.buyer_email,
        "note": call_request.note,
        "gross_cents": transaction.gross_cents,
        "net_cents": transaction.net_cents,
        "currency": transaction.currency,
        "amount": format_money(transaction.gross_cents, transaction.currency),
        "net_amount": format_money(transaction.net_cents, transaction.currency),
        # Under PAYMENT_CAPTURE=immediate the buyer was charged at checkout and gets a refund
        # instead of a released hold, so the emails must not promise "not charged".
        "refund": transaction.payment_state == PaymentState.CAPTURED,
    }


def _transition(
    session: Session, request_id: uuid.UUID, *, seller_id: uuid.UUID, now: datetime, values: dict[str, Any]
) -> None:
    statement = (
        update(CallRequest)
        .where(
            CallRequest.id == request_id,
            CallRequest.seller_id == seller_id,
            CallRequest.status == RequestStatus.PENDING,
            CallRequest.expires_at > now,
        )
        .values(**values, updated_at=now)
        .returning(CallRequest.id)
        .execution_options(synchronize_session=False)
    )
    if session.execute(statement).scalar_one_or_none() is None:
        raise _refusal(session, request_id, seller_id)


def _refusal(session: Session, request_id: uuid.UUID, seller_id: uuid.UUID) -> Exception:
    """Why the conditional UPDATE matched nothing, read after it (so after any winner committed)."""
    current = session.execute(
        select(CallRequest.seller_id, CallRequest.status).where(CallRequest.id == request_id)
    ).one_or_none()
    if current is None or current.seller_id != seller_id:
        return RequestNotFound(str(request_id))
    if current.status == RequestStatus.PENDING:
        return RequestConflict("expired", "This request has expired; the buyer's payment is being released.")
    messages = {
        RequestStatus.ACCEPTED: ("already_accepted", "This request was already accepted."),
        RequestStatus.DECLINED: ("already_declined", "This request was already declined."),
        RequestStatus.CANCELLED: ("cancelled", "This request was cancelled."),
        RequestStatus.COMPLETED: ("completed", "This call has already taken place."),
    }
    return RequestConflict(*messages[current.status])


def _reload(session: Session, request_id: uuid.UUID) -> CallRequest:
    """The row as the database has it now (a bulk UPDATE does not refresh loaded objects)."""
    return session.execute(
        select(CallRequest)
        .options(joinedload(CallRequest.transaction))
        .where(CallRequest.id == request_id)
        .execution_options(populate_existing=True)
    ).scalar_one()


def _seller(session: Session, seller_id: uuid.UUID) -> dict[str, str]:
    row = session.execute(
        select(User.email, Profile.display_name)
        .outerjoin(Profile, Profile.user_id == User.id)
        .where(User.id == seller_id)
    ).one()
    return {"email": row.email, "name": row.display_name or "The seller"}


def _notify_both(session: Session, call_request: CallRequest, cause: str) -> None:
    """Queue ``<cause>_buyer`` and ``<cause>_seller``; the dedupe keys make a repeat a no-op."""
    context = email_context(session, call_request)
    seller_email = _seller(session, call_request.seller_id)["email"]
    for party, recipient in (("buyer", call_request.buyer_email), ("seller", seller_email)):
        queue_email(
            session,
            recipient=recipient,
            template=f"{cause}_{party}",
            context=context,
            dedupe_key=f"{cause}:{party}:{call_request.id}",
        )


def _iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, the same spelling as the call API's times."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value is not None else None
