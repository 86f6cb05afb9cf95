"""The Stripe webhook inbox and what each event does.

The webhook view stores every verified event here (``record_event``: INSERT ... ON CONFLICT DO
NOTHING on Stripe's event id, so a redelivery is a no-op) and a task processes it later
(``process_event``). Processing locks the inbox row, so the same event never runs twice at once,
and a row already processed is skipped, so a repeated task is harmless.

Handlers never trust the event body alone: each checks that the object is ours (metadata ``app``
and ``env``), re-fetches what it needs from the gateway and decides from what the gateway says
now. That makes them correct in any delivery order: a late ``completed`` after an ``expired``, an
``async_payment_succeeded`` before the ``completed``, the same payment announced twice. A payment
is fulfilled at most once because ``transactions.stripe_checkout_session_id`` is UNIQUE and the
request and both emails are written in the same transaction as that row.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Connection, Select, Uuid, bindparam, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from app import metrics
from app.config import Settings
from app.db import on_commit, utcnow
from app.integrations.connect import ConnectGateway
from app.integrations.payments import CheckoutSnapshot, PaymentError, PaymentGateway
from app.models import (
    Checkout,
    CheckoutStatus,
    PaymentState,
    StripeEvent,
    StripeEventStatus,
    Transaction,
)
from app.queue import enqueue_after_commit, enqueue_now
from app.services import connect_events
from app.services.audit import record_event as audit
from app.services.checkout import APP_TAG, fulfil_checkout
from app.services.lifecycle.payments import close_dispute, open_dispute, sync_refund
from app.services.sweeping import Moment, looks_for
from tasks import stripe_events as stripe_event_tasks

log = logging.getLogger(__name__)

STRIPE = "stripe"
# The sweep re-publishes an event still RECEIVED this long after it arrived, then after twice
# as long again each time, and gives up (FAILED, for an operator) after MAX_REQUEUES.
REQUEUE_AFTER = timedelta(seconds=60)
MAX_REQUEUES = 10
REQUEUE_BATCH = 200

Outcome = tuple[StripeEventStatus, str | None]
PROCESSED = StripeEventStatus.PROCESSED
IGNORED = StripeEventStatus.IGNORED


@dataclass(frozen=True)
class EventContext:
    session: Session
    gateway: PaymentGateway
    app_env: str
    platform_fee_bps: int
    request_ttl_seconds: int
    now: datetime
    connect: ConnectGateway | None = None  # for the Connect events (app.services.connect_events)


# --- The inbox -----------------------------------------------------------------------------------


# Written as SQL because SQLAlchemy does not cache the compiled form of the PostgreSQL dialect's
# INSERT ... ON CONFLICT: built with ``postgresql.insert`` it is compiled again on every call
# (about 2 ms), and this runs on every webhook delivery.
_INSERT_EVENT = text(
    "INSERT INTO stripe_events (id, stripe_event_id, type, livemode, payload, status, attempts, received_at)"
    " VALUES (:id, :stripe_event_id, :type, :livemode, :payload, :status, 0, :received_at)"
    " ON CONFLICT (stripe_event_id) DO NOTHING RETURNING id"
).bindparams(bindparam("id", type_=Uuid()), bindparam("payload", type_=JSONB()))


def record_event(connection: Session | Connection, event: dict[str, Any]) -> uuid.UUID | None:
    """Store a verified event in the inbox: its row id, or None for a duplicate delivery. The caller
    publishes ``publish_processing(row_id)`` once the row is committed."""
    return connection.execute(
        _INSERT_EVENT,
        {
            "id": uuid.uuid4(),
            "stripe_event_id": str(event["id"]),
            "type": str(event.get("type", ""))[:100],
            "livemode": bool(event.get("livemode", False)),
            "payload": event,
            "status": StripeEventStatus.RECEIVED.value,
            "received_at": utcnow(),
        },
    ).scalar_one_or_none()


def publish_processing(row_id: uuid.UUID) -> None:
    """Hand a committed inbox row to a worker. If the broker refuses, the row stays RECEIVED and
    ``requeue_stuck_events`` publishes it again a minute later."""
    enqueue_now(stripe_event_tasks.process_stripe_event, str(row_id))


def process_event(
    session: Session,
    event_row_id: uuid.UUID,
    *,
    gateway: PaymentGateway,
    app_env: str,
    platform_fee_bps: int,
    request_ttl_seconds: int,
    now: datetime,
    connect: ConnectGateway | None = None,
) -> StripeEventStatus | None:
    """Run the handler of one inbox event; None when it was already handled (or is unknown).

    A transient gateway error propagates (the task retries, the row stays RECEIVED); a permanent
    one marks the row FAILED with the error, for an operator.
    """
    row = session.execute(
        select(StripeEvent).where(StripeEvent.id == event_row_id).with_for_update()
    ).scalar_one_or_none()
    if row is None or row.status != StripeEventStatus.RECEIVED:
        return None
    context = EventContext(session, gateway, app_env, platform_fee_bps, request_ttl_seconds, now, connect)
    handler = HANDLERS.get(row.type)
    note: str | None
    if handler is None:
        status, note = IGNORED, "unhandled event type"
    else:
        try:
            with session.begin_nested():
                status, note = handler(context, row.payload.get("data", {}).get("object") or {})
        except PaymentError as error:
            if error.transient:
                raise
            status, note = StripeEventStatus.FAILED, f"{error.code or 'payment_error'}: {error}"
            log.error("stripe event failed", extra={"event_id": row.stripe_event_id, "code": error.code})
    row.status, row.error, row.processed_at = status, note, now
    on_commit(session, partial(metrics.webhook_event, row.type, status.value))
    log.info("stripe event", extra={"event_id": row.stripe_event_id, "type": row.type, "outcome": status.value})
    return status


def _stuck(now: Moment) -> Select[tuple[StripeEvent]]:
    return select(StripeEvent).where(
        StripeEvent.status == StripeEventStatus.RECEIVED, StripeEvent.received_at < now - REQUEUE_AFTER
    )


@looks_for(lambda now: _stuck(now).exists())
def requeue_stuck_events(session: Session, now: datetime, settings: Settings) -> dict[str, int]:
    """Sweep step: publish again the events still RECEIVED a minute after they arrived (Redis
    may have been down when the webhook enqueued them), backing off per event; rows a worker is
    processing right now are locked and skipped."""
    rows = session.execute(
        _stuck(now).order_by(StripeEvent.received_at).limit(REQUEUE_BATCH).with_for_update(skip_locked=True)
    ).scalars()
    requeued = failed = 0
    for row in rows:
        if row.received_at > now - REQUEUE_AFTER * 2 ** min(row.attempts, MAX_REQUEUES):
            continue
        if row.attempts >= MAX_REQUEUES:
            row.status, row.error, row.processed_at = StripeEventStatus.FAILED, "never processed", now
            log.error("stripe event given up", extra={"event_id": row.stripe_event_id})
            failed += 1
            continue
        row.attempts += 1
        enqueue_after_commit(session, stripe_event_tasks.process_stripe_event, str(row.id))
        requeued += 1
    return {"inbox_requeued": requeued, "inbox_failed": failed}


# --- Handlers --------------------------------------------------------------------------------------


def handle_checkout_session_paid(ctx: EventContext, obj: dict[str, Any]) -> Outcome:
    """``checkout.session.completed`` and ``async_payment_succeeded``: fulfil once the money is
    held (``requires_capture``) or paid (``succeeded``); anything else waits for a later event."""
    if not _is_ours(obj.get("metadata"), ctx.app_env):
        return IGNORED, "not ours"
    snapshot = ctx.gateway.retrieve_checkout(str(obj["id"]))
    if not _is_ours(snapshot.metadata, ctx.app_env):
        return IGNORED, "not ours"
    state = {"requires_capture": PaymentState.HELD, "succeeded": PaymentState.CAPTURED}.get(
        snapshot.payment_intent_status or ""
    )
    if state is None:
        return PROCESSED, f"waiting: payment intent {snapshot.payment_intent_status}"
    checkout = _checkout_of(ctx.session, snapshot)
    if checkout is None:
        return IGNORED, "unknown checkout"
    created = fulfil_checkout(
        ctx.session,
        checkout,
        snapshot,
        state,
        platform_fee_bps=ctx.platform_fee_bps,
        request_ttl_seconds=ctx.request_ttl_seconds,
        now=ctx.now,
    )
    return PROCESSED, None if created else "already fulfilled"


def handle_async_payment_failed(ctx: EventContext, obj: dict[str, Any]) -> Outcome:
    if not _is_ours(obj.get("metadata"), ctx.app_env):
        return IGNORED, "not ours"
    audit(ctx.session, "payment.async_failed", ref_id=obj.get("id"), actor=STRIPE)
    return PROCESSED, None


def handle_checkout_session_expired(ctx: EventContext, obj: dict[str, Any]) -> Outcome:
    if not _is_ours(obj.get("metadata"), ctx.app_env):
        return IGNORED, "not ours"
    snapshot = ctx.gateway.retrieve_checkout(str(obj["id"]))
    if snapshot.status != "expired":
        return PROCESSED, f"session is {snapshot.status}"
    ctx.session.execute(
        update(Checkout)
        .where(Checkout.stripe_checkout_session_id == snapshot.session_id, Checkout.status == CheckoutStatus.OPEN)
        .values(status=CheckoutStatus.EXPIRED)
        .execution_options(synchronize_session=False)
    )
    return PROCESSED, None


def handle_charge_refunded(ctx: EventContext, charge: dict[str, Any]) -> Outcome:
    """Sync how much of the payment is refunded (``lifecycle.payments.sync_refund``)."""
    if _is_foreign(charge.get("metadata"), ctx.app_env):
        return IGNORED, "not ours"
    transaction = _transaction_by_intent(ctx.session, _object_id(charge.get("payment_intent")))
    if transaction is None:
        return IGNORED, "unknown payment"
    changed = sync_refund(ctx.session, transaction, int(charge.get("amount_refunded") or 0), now=ctx.now)
    return PROCESSED, None if changed else "already in sync"


def handle_dispute_created(ctx: EventContext, dispute: dict[str, Any]) -> Outcome:
    """The payment is DISPUTED and the seller's share held (``lifecycle.payments.open_dispute``)."""
    transaction = _disputed_transaction(ctx, dispute)
    if transaction is None:
        return IGNORED, "unknown payment"
    opened = open_dispute(ctx.session, transaction, dispute, now=ctx.now)
    return PROCESSED, None if opened else "already disputed"


def handle_dispute_closed(ctx: EventContext, dispute: dict[str, Any]) -> Outcome:
    """Won: the hold is given back; lost: a reversal too (``lifecycle.payments.close_dispute``)."""
    transaction = _disputed_transaction(ctx, dispute)
    if transaction is None:
        return IGNORED, "unknown payment"
    closed = close_dispute(ctx.session, transaction, dispute, now=ctx.now)
    return PROCESSED, None if closed else "already closed"


def _disputed_transaction(ctx: EventContext, dispute: dict[str, Any]) -> Transaction | None:
    if _is_foreign(dispute.get("metadata"), ctx.app_env):
        return None
    intent_id = _object_id(dispute.get("payment_intent"))
    if intent_id is None and dispute.get("charge"):
        # Older API shapes name only the charge.
        try:
            intent_id = ctx.gateway.payment_intent_for_charge(_object_id(dispute["charge"]) or "")
        except PaymentError as error:
            if error.transient:
                raise
    return _transaction_by_intent(ctx.session, intent_id)


HANDLERS: dict[str, Callable[[EventContext, dict[str, Any]], Outcome]] = {
    "checkout.session.completed": handle_checkout_session_paid,
    "checkout.session.async_payment_succeeded": handle_checkout_session_paid,
    "checkout.session.async_payment_failed": handle_async_payment_failed,
    "checkout.session.expired": handle_checkout_session_expired,
    "charge.refunded": handle_charge_refunded,
    "charge.dispute.created": handle_dispute_created,
    "charge.dispute.closed": handle_dispute_closed,
    # Seller payouts: account.updated and transfer.reversed.
    **connect_events.HANDLERS,
}


# --- Helpers ---------------------------------------------------------------------------------------


def _is_ours(metadata: object, app_env: str) -> bool:
    return isinstance(metadata, dict) and metadata.get("app") == APP_TAG and metadata.get("env") == app_env


def _is_foreign(metadata: object, app_env: str) -> bool:
    """Charges and disputes may carry no metadata of ours; only a different tag makes them foreign
    (the PaymentIntent id must still match one of our transactions)."""
    return isinstance(metadata, dict) and "app" in metadata and not _is_ours(metadata, app_env)


def _object_id(value: object) -> str | None:
    """An id whether the field holds it or the expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _checkout_of(session: Session, snapshot: CheckoutSnapshot) -> Checkout | None:
    found = session.scalar(select(Checkout).where(Checkout.stripe_checkout_session_id == snapshot.session_id))
    if found is not None:
        return found
    try:
        checkout_id = uuid.UUID(snapshot.metadata.get("checkout_id", ""))
    except ValueError:
        return None
    return session.get(Checkout, checkout_id)


def _transaction_by_intent(session: Session, intent_id: str | None) -> Transaction | None:
    if not intent_id:
        return None
    return session.scalar(select(Transaction).where(Transaction.stripe_payment_intent_id == intent_id))
