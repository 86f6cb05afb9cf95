"""Payouts to Connect sellers, as Stripe Transfers (separate charges and transfers).

``route_payout`` runs in the transaction that records the payout and its ledger PAYOUT row: a
seller whose Connect account can receive payouts gets a ``PayoutTransfer`` row (state SENDING,
idempotency key ``transfer:<payout id>``) and a ``send_transfer`` task published after commit. So
the money leaves the balance exactly when the payout exists, and the Transfer follows it.

``send_transfer`` locks the row, calls Stripe and records the answer: SENT (the payout is PROCESSED
with the Transfer id as its reference) or, when Stripe refuses, FAILED (the payout is FAILED, a
REVERSAL row returns the amount, the seller is told). A transient error leaves the row SENDING for
the task's retries and then the sweep; the same key never makes a second Transfer. A Transfer
reversed later (``transfer.reversed``) is REVERSED the same way. An admin may retry a failed
transfer once: a new payout (new id, new key) for the same amount, if the balance still covers it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.formats import format_money
from app.integrations.connect import ConnectGateway, PaymentError, TransferRequest, TransferSnapshot
from app.models import (
    ConnectAccount,
    LedgerKind,
    PayoutRequest,
    PayoutStatus,
    PayoutTransfer,
    Profile,
    TransferState,
    User,
)
from app.queue import enqueue_after_commit
from app.refusals import Conflict, NotFound
from app.services import payouts
from app.services.audit import record_event, user_actor
from app.services.checkout import APP_TAG
from app.services.outbox import queue_email
from app.services.sweeping import Moment, looks_for
from tasks import transfers as transfer_tasks

# A transfer still SENDING this long after its last attempt lost its task (a dead worker, the
# broker down at commit): the sweep publishes it again, backing off per attempt up to an hour.
STUCK_AFTER = timedelta(minutes=2)
STUCK_BACKOFF_MAX = timedelta(hours=1)
SWEEP_BATCH = 100
LIST_LIMIT = 200


@dataclass(frozen=True)
class TransferRow:
    transfer: PayoutTransfer
    payout: PayoutRequest
    seller_email: str
    seller_name: str | None


def route_payout(session: Session, payout: PayoutRequest) -> bool:
    """Pay ``payout`` by Transfer if the seller's Connect account can take it. Returns True when
    it is left to an admin instead (no Connect account with payouts enabled)."""
    account = session.scalar(select(ConnectAccount).where(ConnectAccount.seller_id == payout.seller_id))
    if account is None or not account.payouts_enabled:
        return True
    session.add(
        PayoutTransfer(
            payout_request_id=payout.id,
            seller_id=payout.seller_id,
            destination=account.stripe_account_id,
            amount_cents=int(payout.amount_cents),
            currency=payout.currency,
            idempotency_key=f"transfer:{payout.id}",
            transfer_group=f"payout:{payout.id}",
        )
    )
    session.flush()
    enqueue_after_commit(session, transfer_tasks.send_transfer, str(payout.id))
    return False


def is_transfer_payout(session: Session, payout_id: uuid.UUID) -> bool:
    """A payout paid by Transfer is never marked processed or rejected by hand."""
    found = session.scalar(select(PayoutTransfer.id).where(PayoutTransfer.payout_request_id == payout_id))
    return found is not None


def send_transfer(
    session: Session, payout_id: uuid.UUID, *, gateway: ConnectGateway, app_env: str, now: datetime
) -> TransferState | None:
    """Create the payout's Transfer at Stripe and record the outcome; None if there is nothing to
    send (unknown, or already sent, failed or reversed). A transient ``PaymentError`` propagates."""
    row = session.execute(
        select(PayoutTransfer).where(PayoutTransfer.payout_request_id == payout_id).with_for_update()
    ).scalar_one_or_none()
    if row is None or row.state != TransferState.SENDING:
        return None
    request = TransferRequest(
        amount_cents=int(row.amount_cents),
        currency=row.currency,
        destination=row.destination,
        transfer_group=row.transfer_group,
        idempotency_key=row.idempotency_key,
        metadata={"app": APP_TAG, "env": app_env, "payout_id": str(payout_id), "seller_id": str(row.seller_id)},
    )
    try:
        snapshot = gateway.create_transfer(request)
    except PaymentError as error:
        if error.transient:
            raise
        _fail(session, row, f"{error.code or 'transfer_failed'}: {error}", now=now)
        return TransferState.FAILED
    _mark_sent(session, row, snapshot, now=now)
    return TransferState.SENT


def _mark_sent(session: Session, row: PayoutTransfer, snapshot: TransferSnapshot, *, now: datetime) -> None:
    row.state, row.stripe_transfer_id, row.sent_at, row.error = TransferState.SENT, snapshot.transfer_id, now, None
    row.attempts += 1
    payout = _move_payout(
        session,
        row.payout_request_id,
        (PayoutStatus.REQUESTED,),
        PayoutStatus.PROCESSED,
        now,
        reference=snapshot.transfer_id,
    )
    record_event(
        session,
        "payout.transferred",
        ref_id=row.payout_request_id,
        actor="system",
        payload={"transferId": snapshot.transfer_id, "destination": row.destination, "amountCents": row.amount_cents},
    )
    if payout is not None:
        _tell_seller(session, payout, "payout_transferred", {"transferId": snapshot.transfer_id})


def _fail(session: Session, row: PayoutTransfer, reason: str, *, now: datetime) -> None:
    row.state, row.error, row.failed_at = TransferState.FAILED, reason[:1000], now
    row.attempts += 1
    payout = _move_payout(
        session,
        row.payout_request_id,
        (PayoutStatus.REQUESTED,),
        PayoutStatus.FAILED,
        now,
        reject_reason="The transfer to your Stripe account did not go through.",
    )
    if payout is None:
        return
    payouts.add_ledger_row(session, payout, LedgerKind.REVERSAL, int(payout.amount_cents), "Transfer failed", now)
    record_event(session, "payout.transfer_failed", ref_id=payout.id, actor="stripe", payload={"error": row.error})
    _tell_seller(session, payout, "payout_failed", {})


def apply_reversal(session: Session, snapshot: TransferSnapshot, *, now: datetime) -> bool:
    """``transfer.reversed``: return the reversed amount to the seller's balance, once. Works in any
    order with ``send_transfer``: the row lock waits for a send in progress, and a row left SENDING
    by a send that died after Stripe made the Transfer is completed from the snapshot."""
    if snapshot.amount_reversed_cents <= 0:
        return False
    row = _locked_transfer(session, snapshot)
    if row is None or row.state in (TransferState.REVERSED, TransferState.FAILED):
        if row is not None and row.amount_reversed_cents < snapshot.amount_reversed_cents:
            # One REVERSAL row per payout: a partial reversal that grew needs an operator.
            record_event(
                session,
                "payout.reversal_grew",
                ref_id=row.payout_request_id,
                actor="stripe",
                payload={"transferId": snapshot.transfer_id, "amountReversed": snapshot.amount_reversed_cents},
            )
        return False
    row.state, row.stripe_transfer_id, row.reversed_at = TransferState.REVERSED, snapshot.transfer_id, now
    row.amount_reversed_cents = min(snapshot.amount_reversed_cents, int(row.amount_cents))
    sources = (PayoutStatus.REQUESTED, PayoutStatus.PROCESSED)
    payout = _move_payout(
        session, row.payout_request_id, sources, PayoutStatus.REVERSED, now, reference=row.stripe_transfer_id
    )
    if payout is None:
        return False
    _return_reversed(session, payout, int(row.amount_reversed_cents), snapshot.transfer_id, now=now)
    return True


def _locked_transfer(session: Session, snapshot: TransferSnapshot) -> PayoutTransfer | None:
    """The transfer row by Stripe's id, or by our payout id in its metadata (a send that died
    before recording the id), locked."""
    payout_id = _uuid(snapshot.metadata.get("payout_id"))
    return session.execute(
        select(PayoutTransfer)
        .where(
            or_(
                PayoutTransfer.stripe_transfer_id == snapshot.transfer_id,
                PayoutTransfer.payout_request_id == payout_id,
            )
        )
        .with_for_update()
    ).scalar_one_or_none()


def _return_reversed(session: Session, payout: PayoutRequest, amount: int, transfer_id: str, *, now: datetime) -> None:
    payouts.add_ledger_row(session, payout, LedgerKind.REVERSAL, amount, "Transfer reversed", now)
    record_event(
        session,
        "payout.transfer_reversed",
        ref_id=payout.id,
        actor="stripe",
        payload={"transferId": transfer_id, "amountReversedCents": amount},
    )
    _tell_seller(session, payout, "payout_reversed", {"reversed": format_money(amount, payout.currency)})


def retry_transfer(session: Session, payout_id: uuid.UUID, *, admin_id: uuid.UUID, now: datetime) -> PayoutRequest:
    """An admin retries a failed transfer: a new payout of the same amount (a new id, so a new
    idempotency key), taken from the balance the failure restored. Once per failure."""
    row = session.execute(
        select(PayoutTransfer).where(PayoutTransfer.payout_request_id == payout_id).with_for_update()
    ).scalar_one_or_none()
    if row is None:
        raise NotFound("not_found", "No such transfer.")
    if row.state != TransferState.FAILED or row.retried_by_id is not None:
        raise Conflict("not_retryable", "Only a failed transfer that was not retried yet can be retried.")
    retry = payouts.request_payout(session, row.seller_id, int(row.amount_cents), currency=row.currency, now=now)
    row.retried_by_id = retry.id
    record_event(
        session,
        "admin.transfer_retried",
        ref_id=payout_id,
        actor=user_actor(admin_id),
        payload={"retryPayoutId": str(retry.id), "amountCents": int(row.amount_cents)},
    )
    return retry


def _stuck(now: Moment) -> Select[tuple[PayoutTransfer]]:
    return select(PayoutTransfer).where(
        PayoutTransfer.state == TransferState.SENDING,
        func.coalesce(PayoutTransfer.last_attempt_at, PayoutTransfer.created_at) < now - STUCK_AFTER,
    )


@looks_for(lambda now: _stuck(now).exists())
def resend_stuck_transfers(session: Session, now: datetime, settings: Settings) -> dict[str, int]:
    """Sweep step: publish again the transfers left SENDING by a lost task (the key makes it safe)."""
    rows = session.scalars(
        _stuck(now).order_by(PayoutTransfer.created_at).limit(SWEEP_BATCH).with_for_update(skip_locked=True)
    )
    resent = 0
    for row in rows:
        wait = min(STUCK_AFTER * 2 ** min(row.attempts, 10), STUCK_BACKOFF_MAX)
        if row.last_attempt_at is not None and row.last_attempt_at > now - wait:
            continue
        row.attempts += 1
        row.last_attempt_at = now
        enqueue_after_commit(session, transfer_tasks.send_transfer, str(row.payout_request_id))
        resent += 1
    return {"transfers_resent": resent} if resent else {}


def list_transfers(
    session: Session, state: TransferState | None = None, *, limit: int = LIST_LIMIT
) -> list[TransferRow]:
    """Transfers for the admin, newest first; ``state`` filters (FAILED: the ones to retry)."""
    query = (
        select(PayoutTransfer, PayoutRequest, User.email, Profile.display_name)
        .join(PayoutRequest, PayoutRequest.id == PayoutTransfer.payout_request_id)
        .join(User, User.id == PayoutTransfer.seller_id)
        .outerjoin(Profile, Profile.user_id == PayoutTransfer.seller_id)
        .order_by(PayoutTransfer.created_at.desc(), PayoutTransfer.id)
        .limit(limit)
    )
    if state is not None:
        query = query.where(PayoutTransfer.state == state)
    return [TransferRow(*row) for row in session.execute(query)]


def transfers_by_payout(session: Session, payout_ids: list[uuid.UUID]) -> dict[uuid.UUID, PayoutTransfer]:
    if not payout_ids:
        return {}
    rows = session.scalars(select(PayoutTransfer).where(PayoutTransfer.payout_request_id.in_(payout_ids)))
    return {row.payout_request_id: row for row in rows}


def _move_payout(
    session: Session,
    payout_id: uuid.UUID,
    sources: tuple[PayoutStatus, ...],
    target: PayoutStatus,
    now: datetime,
    **values: object,
) -> PayoutRequest | None:
    """One conditional UPDATE of the payout's status; None if it was not in ``sources``."""
    payout = session.execute(
        update(PayoutRequest)
        .where(PayoutRequest.id == payout_id, PayoutRequest.status.in_(sources))
        .values(status=target, processed_at=now, **values)
        .returning(PayoutRequest)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if payout is not None:
        session.refresh(payout)
    return payout


def _tell_seller(session: Session, payout: PayoutRequest, template: str, extra: dict[str, str]) -> None:
    seller = session.get(User, payout.seller_id)
    if seller is None or seller.deleted_at is not None:
        return
    queue_email(
        session,
        recipient=seller.email,
        template=template,
        context={
            "payoutId": str(payout.id),
            "amount": format_money(int(payout.amount_cents), payout.currency),
            **extra,
        },
        dedupe_key=f"{template}:{payout.id}",
    )


def _uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None
