"""The payment of a request: captured, released, refunded, disputed, and what a dispute does to the
seller's balance.

The gateway is called by the caller (``request_payments``, ``call_endings``) or has already
spoken (a webhook, ``stripe_events``); these functions record what happened, each as one move of
``PAYMENT_MOVES`` with its audit row, so a repeat of the same news changes nothing.

Disputes settle in the ledger: when the buyer's bank opens one, the seller's share of the
disputed amount is held (a DISPUTE_HOLD row, negative); when it closes the hold is given back (a
DISPUTE_RELEASE row) and, if it was lost, the share is taken for good (a REVERSAL row). The
balance may go negative; payouts are refused until it is covered. Each row is UNIQUE per call and
kind, so the events may arrive twice and in any order: a ``closed`` before its ``created`` opens
the dispute first, and a late ``created`` after the ``closed`` finds the dispute already settled.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.models import CallRequest, CallSettlement, LedgerKind, PaymentState, Transaction
from app.services import ledger
from app.services.audit import record_event
from app.services.lifecycle._moves import move_payment

SYSTEM = "system"
STRIPE = "stripe"
WON_STATUSES = ("won", "warning_closed")  # an inquiry closed without a chargeback leaves the money


def mark_captured(session: Session, call: CallRequest, *, now: datetime) -> bool:
    moved = move_payment(session, "capture", call.transaction_id, now=now, values={"captured_at": now})
    if moved:
        record_event(session, "payment.captured", ref_id=call.id, actor=SYSTEM)
    return moved


def mark_voided(session: Session, call: CallRequest, *, now: datetime, payload: dict[str, Any] | None = None) -> bool:
    moved = move_payment(session, "void", call.transaction_id, now=now, values={"voided_at": now})
    if moved:
        record_event(session, "payment.voided", ref_id=call.id, actor=SYSTEM, payload=payload)
    return moved


def mark_refunded(session: Session, call: CallRequest, *, now: datetime, payload: dict[str, Any] | None = None) -> bool:
    """Refunded in full. A refund may still be pending at the bank; ``charge.refunded`` confirms it."""
    values = {"refunded_at": now, "refunded_cents": call.transaction.gross_cents}
    moved = move_payment(session, "refund", call.transaction_id, now=now, values=values)
    if moved:
        record_event(session, "payment.refunded", ref_id=call.id, actor=SYSTEM, payload=payload)
    return moved


def record_partial_refund(
    session: Session, call: CallRequest, total_cents: int, *, now: datetime, payload: dict[str, Any] | None = None
) -> bool:
    """ChatLink has given back ``total_cents`` of this payment so far (a settlement's share for
    unused time, an admin's refund of a problem): ``refunded_cents`` only ever grows to it, so a
    ``charge.refunded`` that got here first counts once; all of it makes the payment REFUNDED."""
    transaction = call.transaction
    amount = min(max(total_cents, 0), transaction.gross_cents)
    if amount >= transaction.gross_cents:
        return mark_refunded(session, call, now=now, payload=payload)
    grew = session.execute(
        update(Transaction)
        .where(Transaction.id == transaction.id, Transaction.refunded_cents < amount)
        .values(refunded_cents=amount, updated_at=now)
        .returning(Transaction.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if grew is not None:
        record_event(
            session,
            "payment.partly_refunded",
            ref_id=call.id,
            actor=SYSTEM,
            payload={"cents": amount, **(payload or {})},
        )
    return grew is not None


def sync_refund(session: Session, transaction: Transaction, amount_cents: int, *, now: datetime) -> bool:
    """Stripe says ``amount_cents`` of the charge is refunded. ``refunded_cents`` only ever grows, so
    an older event cannot undo a newer one; a full refund makes the payment REFUNDED (a dispute
    keeps its own state). True when anything changed."""
    amount = min(amount_cents, transaction.gross_cents)
    grew = session.execute(
        update(Transaction)
        .where(Transaction.id == transaction.id, Transaction.refunded_cents < amount)
        .values(refunded_cents=amount, updated_at=now)
        .returning(Transaction.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    moved = False
    if amount >= transaction.gross_cents:
        refunded_at = func.coalesce(Transaction.refunded_at, now)
        moved = move_payment(session, "refund_synced", transaction.id, now=now, values={"refunded_at": refunded_at})
    changed = grew is not None or moved
    if changed:
        record_event(session, "payment.refund_synced", ref_id=transaction.id, actor=STRIPE, payload={"cents": amount})
    return changed


def open_dispute(session: Session, transaction: Transaction, dispute: dict[str, Any], *, now: datetime) -> bool:
    """The buyer's bank disputes the payment: DISPUTED, and the seller's share held. False for a
    repeat, or for a ``created`` arriving after its dispute already closed."""
    if transaction.disputed_at is not None and transaction.payment_state != PaymentState.DISPUTED:
        return False  # opened and settled already; this is a late or repeated delivery
    moved = move_payment(session, "dispute", transaction.id, now=now, values={"disputed_at": now})
    if moved:
        details = {key: dispute.get(key) for key in ("id", "amount", "currency", "reason", "status")}
        record_event(session, "payment.disputed", ref_id=transaction.id, actor=STRIPE, payload=details)
    call = _call_of(session, transaction)
    if call is not None:
        share = _seller_share(session, call, transaction, int(dispute.get("amount") or transaction.gross_cents))
        if share > 0:
            ledger.record_call_entry(session, call, LedgerKind.DISPUTE_HOLD, -share, memo="Payment disputed", now=now)
    return moved


def close_dispute(session: Session, transaction: Transaction, dispute: dict[str, Any], *, now: datetime) -> bool:
    """The dispute closed: won (or an inquiry closed) gives the hold back; lost gives it back and
    takes the share for good (a reversal). Opens it first when its ``created`` has not arrived."""
    if transaction.payment_state != PaymentState.DISPUTED and transaction.disputed_at is None:
        open_dispute(session, transaction, dispute, now=now)
    won = str(dispute.get("status")) in WON_STATUSES
    moved = move_payment(session, "dispute_won" if won else "dispute_lost", transaction.id, now=now)
    if moved:
        payload = {"id": dispute.get("id"), "status": dispute.get("status")}
        record_event(session, "payment.dispute_closed", ref_id=transaction.id, actor=STRIPE, payload=payload)
    call = _call_of(session, transaction)
    held = ledger.call_entry_cents(session, call.id, LedgerKind.DISPUTE_HOLD) if call is not None else 0
    if call is not None and held < 0:
        ledger.record_call_entry(
            session, call, LedgerKind.DISPUTE_RELEASE, -held, memo="Dispute closed: hold released", now=now
        )
        if not won:
            ledger.record_call_entry(session, call, LedgerKind.REVERSAL, held, memo="Dispute lost", now=now)
    return moved


def _seller_share(session: Session, call: CallRequest, transaction: Transaction, disputed_cents: int) -> int:
    """The part of the seller's earning for this call that the disputed amount stands for, rounded
    half up; nothing when the seller earned nothing from it (the call never happened). The earning
    stands for what the buyer kept paying: the gross, less the settlement's refund of unused time."""
    earned = ledger.call_entry_cents(session, call.id, LedgerKind.EARNING)
    settled_refund = session.scalar(
        select(CallSettlement.refund_cents).where(CallSettlement.call_request_id == call.id)
    )
    kept = transaction.gross_cents - (settled_refund or 0)
    if earned <= 0 or kept <= 0:
        return 0
    disputed = min(max(disputed_cents, 0), kept)
    share = (earned * disputed * 2 + kept) // (2 * kept)
    return min(share, earned)


def _call_of(session: Session, transaction: Transaction) -> CallRequest | None:
    return session.scalar(select(CallRequest).where(CallRequest.transaction_id == transaction.id))


def request_id_of(session: Session, transaction_id: uuid.UUID) -> uuid.UUID | None:
    return session.scalar(select(CallRequest.id).where(CallRequest.transaction_id == transaction_id))
