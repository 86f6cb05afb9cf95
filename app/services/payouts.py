"""Payouts: a seller asks for money from their balance; an admin pays it out or rejects it.

Requesting takes the money out of the balance at once (a PAYOUT row, negative), so the same money
can never be asked for twice. Two requests racing each other (two tabs, a double-submitted form,
a script) are serialised by locking the seller's ``users`` row before the balance is read: the
second waits for the first to commit and then sees its PAYOUT row. An admin then either marks the
payout PROCESSED with the bank or transfer reference, or REJECTED with a reason, which returns the
amount with a REVERSAL row. Both are one conditional UPDATE from REQUESTED, so two admins (or two
clicks) cannot both decide, and both are audited and emailed to the seller.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app import metrics
from app.db import on_commit
from app.formats import format_money, iso
from app.models import LedgerEntry, LedgerKind, PayoutRequest, PayoutStatus, Profile, Role, User
from app.refusals import Conflict, Forbidden, Invalid, NotFound
from app.services import ledger, transfers
from app.services.audit import record_event, user_actor
from app.services.lifecycle.notices import seller_contact
from app.services.outbox import queue_email

MIN_PAYOUT_CENTS = 1000
MAX_REFERENCE_LENGTH = 200
MAX_REASON_LENGTH = 500
QUEUE_LIMIT = 200


@dataclass(frozen=True)
class QueuedPayout:
    payout: PayoutRequest
    seller_email: str
    seller_name: str | None


def request_payout(
    session: Session, seller_id: uuid.UUID, amount_cents: int, *, currency: str, now: datetime
) -> PayoutRequest:
    """Take ``amount_cents`` out of the seller's available balance and queue it for an admin."""
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int):
        raise Invalid("invalid", "Enter the amount as a whole number of cents.", field="amountCents")
    if amount_cents < MIN_PAYOUT_CENTS:
        minimum = format_money(MIN_PAYOUT_CENTS, currency)
        raise Invalid("amount_too_small", f"The smallest payout is {minimum}.", field="amountCents")
    # The row lock serialises this seller's payout requests: whoever comes second reads the
    # balance only after the first has committed its PAYOUT row (or rolled back).
    seller = session.execute(select(User).where(User.id == seller_id).with_for_update()).scalar_one_or_none()
    if seller is None or seller.deleted_at is not None:
        raise NotFound("not_found", "No such seller.")
    if seller.suspended_at is not None:
        raise Forbidden("suspended", "Payouts are on hold while your account is suspended.")
    available = ledger.available_cents(session, seller_id, currency)
    if amount_cents > available:
        raise Invalid(
            "insufficient_balance",
            f"You can request at most {format_money(max(available, 0), currency)}.",
            field="amountCents",
        )
    payout = PayoutRequest(
        id=uuid.uuid4(), seller_id=seller_id, amount_cents=amount_cents, currency=currency, created_at=now
    )
    session.add(payout)
    session.flush()
    add_ledger_row(session, payout, LedgerKind.PAYOUT, -amount_cents, "Payout requested", now)
    record_event(
        session,
        "payout.requested",
        ref_id=payout.id,
        actor=user_actor(seller_id),
        payload={"amountCents": amount_cents, "currency": currency},
    )
    # A Connect seller is paid by a Stripe Transfer (app.services.transfers); anyone else by an admin.
    if transfers.route_payout(session, payout):
        _tell_admins(session, payout)
    on_commit(session, metrics.payout_requested)
    return payout


def process_payout(
    session: Session, payout_id: uuid.UUID, *, admin_id: uuid.UUID, reference: str, now: datetime
) -> PayoutRequest:
    """Mark a REQUESTED payout as paid, with the transfer's reference; the seller is emailed."""
    reference = _required_text(reference, "reference", "the transfer reference", MAX_REFERENCE_LENGTH)
    _refuse_transfer_payout(session, payout_id)
    payout = _decide(
        session,
        payout_id,
        values={"status": PayoutStatus.PROCESSED, "reference": reference},
        admin_id=admin_id,
        now=now,
    )
    record_event(
        session,
        "admin.payout_processed",
        ref_id=payout.id,
        actor=user_actor(admin_id),
        payload={"sellerId": str(payout.seller_id), "amountCents": int(payout.amount_cents), "reference": reference},
    )
    _email_seller(session, payout, "payout_processed", {"reference": reference})
    on_commit(session, metrics.payout_processed)
    return payout


def reject_payout(
    session: Session, payout_id: uuid.UUID, *, admin_id: uuid.UUID, reason: str, now: datetime
) -> PayoutRequest:
    """Refuse a REQUESTED payout: the amount goes back to the balance and the seller is told why."""
    reason = _required_text(reason, "reason", "a reason", MAX_REASON_LENGTH)
    _refuse_transfer_payout(session, payout_id)
    payout = _decide(
        session,
        payout_id,
        values={"status": PayoutStatus.REJECTED, "reject_reason": reason},
        admin_id=admin_id,
        now=now,
    )
    add_ledger_row(session, payout, LedgerKind.REVERSAL, int(payout.amount_cents), "Payout rejected", now)
    record_event(
        session,
        "admin.payout_rejected",
        ref_id=payout.id,
        actor=user_actor(admin_id),
        payload={"sellerId": str(payout.seller_id), "amountCents": int(payout.amount_cents), "reason": reason},
    )
    _email_seller(session, payout, "payout_rejected", {"reason": reason})
    on_commit(session, metrics.payout_rejected)
    return payout


def _refuse_transfer_payout(session: Session, payout_id: uuid.UUID) -> None:
    if transfers.is_transfer_payout(session, payout_id):
        raise Conflict(
            "paid_by_transfer", "This payout is paid by a Stripe transfer; see Transfers to follow or retry it."
        )


def _decide(
    session: Session, payout_id: uuid.UUID, *, values: dict[str, object], admin_id: uuid.UUID, now: datetime
) -> PayoutRequest:
    """One conditional UPDATE from REQUESTED; the loser of a race changes nothing and gets 409."""
    statement = (
        update(PayoutRequest)
        .where(PayoutRequest.id == payout_id, PayoutRequest.status == PayoutStatus.REQUESTED)
        .values(**values, processed_by_id=admin_id, processed_at=now)
        .returning(PayoutRequest)
        .execution_options(synchronize_session=False)
    )
    payout = session.execute(statement).scalar_one_or_none()
    if payout is not None:
        session.refresh(payout)
        return payout
    existing = session.get(PayoutRequest, payout_id)
    if existing is None:
        raise NotFound("not_found", "No such payout.")
    raise Conflict("already_decided", f"This payout was already {existing.status.value.lower()}.")


def add_ledger_row(
    session: Session, payout: PayoutRequest, kind: LedgerKind, amount_cents: int, memo: str, now: datetime
) -> None:
    session.execute(
        insert(LedgerEntry)
        .values(
            id=uuid.uuid4(),
            seller_id=payout.seller_id,
            kind=kind,
            amount_cents=amount_cents,
            currency=payout.currency,
            payout_request_id=payout.id,
            memo=memo,
            created_at=now,
        )
        .on_conflict_do_nothing(constraint="uq_ledger_entries_kind_payout_request_id")
    )


def _required_text(value: object, field: str, label: str, limit: int) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise Invalid("invalid", f"Enter {label}.", field=field)
    if len(text) > limit:
        raise Invalid("invalid", f"Keep it under {limit} characters.", field=field)
    return text


def _email_seller(session: Session, payout: PayoutRequest, template: str, extra: dict[str, str]) -> None:
    seller = session.get(User, payout.seller_id)
    if seller is None or seller.deleted_at is not None:
        return
    queue_email(
        session,
        recipient=seller.email,
        template=template,
        context={**_email_context(payout), **extra},
        dedupe_key=f"{template}:{payout.id}",
    )


def _tell_admins(session: Session, payout: PayoutRequest) -> None:
    """Every admin hears of a payout to pay, with the seller named: the queue is not the only
    place an admin decides from."""
    seller = seller_contact(session, payout.seller_id)
    context = {**_email_context(payout), "seller_name": seller["name"], "seller_email": seller["email"]}
    admins = session.scalars(select(User).where(User.role == Role.ADMIN, User.deleted_at.is_(None)))
    for admin in admins:
        queue_email(
            session,
            recipient=admin.email,
            template="payout_requested_admin",
            context=context,
            dedupe_key=f"payout_requested_admin:{payout.id}:{admin.id}",
        )


def _email_context(payout: PayoutRequest) -> dict[str, object]:
    return {
        "payoutId": str(payout.id),
        "amountCents": int(payout.amount_cents),
        "currency": payout.currency,
        "amount": format_money(int(payout.amount_cents), payout.currency),
        "requestedAt": iso(payout.created_at),
    }


def seller_payouts(session: Session, seller_id: uuid.UUID, *, limit: int = 50) -> list[PayoutRequest]:
    """The seller's payouts, newest first."""
    return list(
        session.scalars(
            select(PayoutRequest)
            .where(PayoutRequest.seller_id == seller_id)
            .order_by(PayoutRequest.created_at.desc(), PayoutRequest.id)
            .limit(limit)
        )
    )


def payout_queue(
    session: Session, status: PayoutStatus | None = PayoutStatus.REQUESTED, *, limit: int = QUEUE_LIMIT
) -> list[QueuedPayout]:
    """Payouts for the admin: waiting ones oldest first (first come, first paid), decided ones
    newest first."""
    query = (
        select(PayoutRequest, User.email, Profile.display_name)
        .join(User, User.id == PayoutRequest.seller_id)
        .outerjoin(Profile, Profile.user_id == PayoutRequest.seller_id)
        .limit(limit)
    )
    if status is not None:
        query = query.where(PayoutRequest.status == status)
    if status == PayoutStatus.REQUESTED:
        query = query.order_by(PayoutRequest.created_at, PayoutRequest.id)
    else:
        query = query.order_by(PayoutRequest.created_at.desc(), PayoutRequest.id)
    return [QueuedPayout(payout, email, name) for payout, email, name in session.execute(query)]
