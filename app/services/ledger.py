"""The seller's ledger: append-only money movements, the balance, and the CSV export.

The ledger is the only source of a balance: an EARNING row (+ net, from the call's settlement) when
a call completes or the buyer does not show up, a PAYOUT row (- amount) when the seller asks for money, a REVERSAL row
(+ amount) when an admin rejects that payout, or (- amount) when a dispute is lost or an admin
refunds a buyer's problem report (one per case, ``problem_case_id``), and a
DISPUTE_HOLD (-) / DISPUTE_RELEASE (+) pair around an open dispute (app/services/lifecycle/payments.py).
``available`` is the sum of the rows. ``pending`` is money a buyer has paid or has on hold for a
call that has not happened yet, counted as the seller's share (net of the platform fee), because
that is what will land in ``available`` if the call completes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.formats import iso
from app.models import (
    CallRequest,
    LedgerEntry,
    LedgerKind,
    PaymentState,
    Profile,
    RequestStatus,
    Transaction,
    User,
)

RECENT_LIMIT = 20
CSV_BATCH = 500
# Spreadsheet programs run a cell that starts with one of these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

SELLER_CSV_COLUMNS = (
    "created_at",
    "entry_id",
    "kind",
    "amount_cents",
    "currency",
    "call_request_id",
    "payout_request_id",
    "memo",
)
ADMIN_CSV_COLUMNS = (
    "created_at",
    "entry_id",
    "seller_id",
    "seller_email",
    "kind",
    "amount_cents",
    "currency",
    "call_request_id",
    "payout_request_id",
    "memo",
)

# Calls that may still happen: their money is paid or held but not yet earned.
_OPEN_STATUSES = (RequestStatus.PENDING, RequestStatus.ACCEPTED)
_PAID_STATES = (PaymentState.HELD, PaymentState.CAPTURED)


@dataclass(frozen=True)
class Balance:
    available_cents: int
    pending_cents: int
    currency: str

    def as_json(self) -> dict[str, Any]:
        return {"availableCents": self.available_cents, "pendingCents": self.pending_cents, "currency": self.currency}


def seller_currency(session: Session, seller_id: uuid.UUID, *, default: str) -> str:
    """The currency the seller is paid in: their profile's, or the platform default before they
    have one."""
    currency = session.scalar(select(Profile.currency).where(Profile.user_id == seller_id))
    return currency or default


def available_cents(session: Session, seller_id: uuid.UUID, currency: str) -> int:
    """The sum of the seller's ledger rows in ``currency``."""
    total = session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_cents), 0)).where(
            LedgerEntry.seller_id == seller_id, LedgerEntry.currency == currency
        )
    )
    return int(total or 0)


def pending_cents(session: Session, seller_id: uuid.UUID, currency: str) -> int:
    """The seller's share (net) of held or captured payments for calls still PENDING or ACCEPTED."""
    total = session.scalar(
        select(func.coalesce(func.sum(Transaction.net_cents), 0))
        .join(CallRequest, CallRequest.transaction_id == Transaction.id)
        .where(
            CallRequest.seller_id == seller_id,
            CallRequest.status.in_(_OPEN_STATUSES),
            Transaction.payment_state.in_(_PAID_STATES),
            Transaction.currency == currency,
        )
    )
    return max(0, int(total or 0))


def get_balance(session: Session, seller_id: uuid.UUID, *, currency: str) -> Balance:
    return Balance(
        available_cents=available_cents(session, seller_id, currency),
        pending_cents=pending_cents(session, seller_id, currency),
        currency=currency,
    )


def record_earning(session: Session, request: CallRequest, *, amount_cents: int | None = None, now: datetime) -> bool:
    """Credit the seller with their net of a call that completed or whose buyer did not show up:
    ``amount_cents`` from the call's settlement (the whole net, or the kept part's net when the
    seller ended early; the transaction's whole net when not given).

    Called by the lifecycle in the transaction that settles the call, once it has checked that the
    money was collected. Nothing is recorded for nothing. Returns False then, and for a repeat.
    """
    amount = request.transaction.net_cents if amount_cents is None else amount_cents
    if amount <= 0:
        return False
    return record_call_entry(session, request, LedgerKind.EARNING, amount, memo=_earning_memo(request), now=now)


def record_case_reversal(
    session: Session, request: CallRequest, case_id: uuid.UUID, amount_cents: int, *, memo: str, now: datetime
) -> bool:
    """Take back (a negative ``amount_cents``) the seller's share of a refund an admin granted on a
    problem case: one REVERSAL row per case (UNIQUE on kind and case), the call named in the memo
    because a call may have two cases. Returns False for a repeat."""
    statement = (
        insert(LedgerEntry)
        .values(
            id=uuid.uuid4(),
            seller_id=request.seller_id,
            kind=LedgerKind.REVERSAL,
            amount_cents=amount_cents,
            currency=request.transaction.currency,
            problem_case_id=case_id,
            memo=f"{memo} (call {request.id})"[:200],
            created_at=now,
        )
        .on_conflict_do_nothing(constraint="uq_ledger_entries_kind_problem_case_id")
        .returning(LedgerEntry.id)
    )
    return session.execute(statement).scalar_one_or_none() is not None


def record_call_entry(
    session: Session, request: CallRequest, kind: LedgerKind, amount_cents: int, *, memo: str, now: datetime
) -> bool:
    """Append a row of ``kind`` for this call, once: the UNIQUE (kind, call_request_id) makes a
    repeat a no-op. Returns False for a repeat."""
    statement = (
        insert(LedgerEntry)
        .values(
            id=uuid.uuid4(),
            seller_id=request.seller_id,
            kind=kind,
            amount_cents=amount_cents,
            currency=request.transaction.currency,
            call_request_id=request.id,
            memo=memo,
            created_at=now,
        )
        .on_conflict_do_nothing(constraint="uq_ledger_entries_kind_call_request_id")
        .returning(LedgerEntry.id)
    )
    return session.execute(statement).scalar_one_or_none() is not None


def call_entry_cents(session: Session, request_id: uuid.UUID, kind: LedgerKind) -> int:
    """The amount of this call's row of ``kind``; 0 when there is none."""
    amount = session.scalar(
        select(LedgerEntry.amount_cents).where(LedgerEntry.call_request_id == request_id, LedgerEntry.kind == kind)
    )
    return int(amount or 0)


def _earning_memo(request: CallRequest) -> str:
    if request.status == RequestStatus.CANCELLED:
        return "Call paid, buyer did not show up"
    ended, due = request.ended_at, request.ends_at
    if request.ended_by == "seller" and ended is not None and due is not None and ended < due:
        return "Call ended early by you: the kept part"
    return "Call completed"


def recent_entries(session: Session, seller_id: uuid.UUID, *, limit: int = RECENT_LIMIT) -> list[LedgerEntry]:
    """The seller's latest rows, newest first."""
    return list(
        session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.seller_id == seller_id)
            .order_by(LedgerEntry.created_at.desc(), LedgerEntry.id.desc())
            .limit(limit)
        )
    )


def date_window(start: date | None, end: date | None) -> tuple[datetime | None, datetime | None]:
    """Whole UTC days: ``start`` from its midnight, ``end`` up to the next midnight (inclusive)."""
    since = datetime.combine(start, time.min, tzinfo=UTC) if start else None
    until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC) if end else None
    return since, until


def csv_rows(
    session: Session,
    *,
    seller_id: uuid.UUID | None = None,
    start: date | None = None,
    end: date | None = None,
) -> Iterator[list[object]]:
    """The header, then one row per ledger entry, oldest first. With ``seller_id`` it is that
    seller's own export; without, everyone's (the admin's), with the seller's id and email.
    Streamed in batches so an export of the whole ledger never sits in memory, and read as plain
    rows, not ORM objects: a seller's year is tens of thousands of them, and objects that live
    through a batch would set off a full garbage collection, a pause for the whole process, on
    nearly every export."""
    admin = seller_id is None
    columns = ADMIN_CSV_COLUMNS if admin else SELLER_CSV_COLUMNS
    yield list(columns)
    query = select(
        LedgerEntry.created_at,
        LedgerEntry.id,
        LedgerEntry.seller_id,
        User.email,
        LedgerEntry.kind,
        LedgerEntry.amount_cents,
        LedgerEntry.currency,
        LedgerEntry.call_request_id,
        LedgerEntry.payout_request_id,
        LedgerEntry.memo,
    ).join(User, User.id == LedgerEntry.seller_id)
    if seller_id is not None:
        query = query.where(LedgerEntry.seller_id == seller_id)
    since, until = date_window(start, end)
    if since is not None:
        query = query.where(LedgerEntry.created_at >= since)
    if until is not None:
        query = query.where(LedgerEntry.created_at < until)
    query = query.order_by(LedgerEntry.created_at, LedgerEntry.id).execution_options(yield_per=CSV_BATCH)
    for entry in session.execute(query):
        values = {
            "created_at": iso(entry.created_at),
            "entry_id": str(entry.id),
            "seller_id": str(entry.seller_id),
            "seller_email": entry.email,
            "kind": entry.kind.value,
            "amount_cents": int(entry.amount_cents),
            "currency": entry.currency,
            "call_request_id": str(entry.call_request_id or ""),
            "payout_request_id": str(entry.payout_request_id or ""),
            "memo": entry.memo,
        }
        yield [safe_cell(values[column]) for column in columns]


def safe_cell(value: object) -> object:
    """Defuse CSV injection: a text cell that a spreadsheet would run as a formula gets a leading
    quote. Integers (amounts in cents, which may be negative) stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value
