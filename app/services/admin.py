"""The operator's tools: suspend and reinstate sellers, and the read models of the admin pages
(sellers, disputes, the event log, a per-day summary).

Every admin action is audited with the admin as actor (``user:<id>``) and the object as
reference. Suspension is one conditional UPDATE on ``users.suspended_at``; the paywall and the
checkout read it (``app.services.profiles.seller_unavailable_reason``), and the seller's requests
are declined or cancelled through ``app.services.lifecycle``, each hold released after commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Date, case, cast, func, or_, select, update
from sqlalchemy.orm import Session

from app.models import (
    CallRequest,
    CallSettlement,
    CancelReason,
    EventLog,
    LedgerEntry,
    LedgerKind,
    PaymentState,
    PayoutRequest,
    PayoutStatus,
    ProblemCase,
    ProblemStatus,
    Profile,
    Report,
    ReportStatus,
    RequestStatus,
    Role,
    Transaction,
    User,
)
from app.refusals import Conflict, Invalid, NotFound, Refusal
from app.services.audit import record_event, user_actor
from app.services.lifecycle import decisions
from app.services.outbox import queue_email

LIST_LIMIT = 200
NOTE_MAX = 500
SUMMARY_DAYS_MAX = 366


# --- Suspension -------------------------------------------------------------------------------


def suspend_seller(
    session: Session, seller_id: uuid.UUID, *, admin_id: uuid.UUID, note: str, now: datetime
) -> list[uuid.UUID]:
    """Suspend a seller: their paywall becomes unavailable, their PENDING requests are declined
    (holds released) and they can no longer accept or decline; a payment that arrives later is
    refused at once (``checkout.fulfil_checkout``). A call already accepted still takes place.
    Returns the declined request ids. 409 when already suspended."""
    note = _clean_note(note)
    suspended = session.execute(
        update(User)
        .where(User.id == seller_id, User.role == Role.SELLER, User.deleted_at.is_(None), User.suspended_at.is_(None))
        .values(suspended_at=now, updated_at=now)
        .returning(User.email)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if suspended is None:
        raise _refusal(session, seller_id, already="already_suspended")
    record_event(
        session, "admin.seller_suspended", ref_id=seller_id, actor=user_actor(admin_id), payload={"note": note}
    )
    declined = decisions.decline_all_pending(session, seller_id, now=now, actor=user_actor(admin_id))
    queue_email(
        session,
        recipient=suspended,
        template="seller_suspended",
        context={"declined": len(declined)},
        dedupe_key=f"seller_suspended:{seller_id}:{now.isoformat()}",
    )
    return declined


def unsuspend_seller(session: Session, seller_id: uuid.UUID, *, admin_id: uuid.UUID, now: datetime) -> None:
    """Lift a suspension: the paywall takes bookings again. 409 when not suspended."""
    reinstated = session.execute(
        update(User)
        .where(User.id == seller_id, User.role == Role.SELLER, User.deleted_at.is_(None), User.suspended_at.isnot(None))
        .values(suspended_at=None, updated_at=now)
        .returning(User.email)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if reinstated is None:
        raise _refusal(session, seller_id, already="not_suspended")
    record_event(session, "admin.seller_unsuspended", ref_id=seller_id, actor=user_actor(admin_id))
    queue_email(
        session,
        recipient=reinstated,
        template="seller_unsuspended",
        context={},
        dedupe_key=f"seller_unsuspended:{seller_id}:{now.isoformat()}",
    )


def _refusal(session: Session, seller_id: uuid.UUID, *, already: str) -> Refusal:
    user = session.get(User, seller_id)
    if user is None or user.role != Role.SELLER:
        return NotFound("not_found", "No such seller.")
    if user.deleted_at is not None:
        return Conflict("deleted", "This seller deleted their account.")
    if already == "already_suspended":
        return Conflict(already, "This seller is already suspended.")
    return Conflict(already, "This seller is not suspended.")


def _clean_note(note: str | None) -> str:
    note = (note or "").strip()
    if len(note) > NOTE_MAX:
        raise Invalid("invalid", f"Keep the note under {NOTE_MAX} characters.")
    return note


# --- Read models ------------------------------------------------------------------------------


def admin_counts(session: Session) -> dict[str, int]:
    """What waits for an admin, for the index page: one round trip."""
    counts = select(
        select(func.count()).where(Report.status == ReportStatus.OPEN).scalar_subquery(),
        select(func.count()).where(PayoutRequest.status == PayoutStatus.REQUESTED).scalar_subquery(),
        select(func.count()).where(Transaction.payment_state == PaymentState.DISPUTED).scalar_subquery(),
        select(func.count()).where(User.role == Role.SELLER, User.suspended_at.isnot(None)).scalar_subquery(),
        select(func.count()).where(ProblemCase.status == ProblemStatus.OPEN).scalar_subquery(),
    )
    reports, payouts, disputes, suspended, problems = session.execute(counts).one()
    return {
        "open_reports": reports,
        "requested_payouts": payouts,
        "disputes": disputes,
        "suspended": suspended,
        "open_problems": problems,
    }


@dataclass(frozen=True)
class SellerRow:
    id: uuid.UUID
    email: str
    display_name: str | None
    slug: str | None
    created_at: datetime
    verified: bool
    suspended_at: datetime | None
    deleted_at: datetime | None


def list_sellers(session: Session, query: str = "", *, limit: int = LIST_LIMIT) -> list[SellerRow]:
    """Sellers, newest first; ``query`` matches part of the email, slug or display name."""
    statement = (
        select(User, Profile.display_name, Profile.slug)
        .outerjoin(Profile, Profile.user_id == User.id)
        .where(User.role == Role.SELLER)
        .order_by(User.created_at.desc(), User.id)
        .limit(limit)
    )
    query = (query or "").strip().lower()
    if query:
        pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        statement = statement.where(
            or_(User.email.ilike(pattern), Profile.slug.ilike(pattern), Profile.display_name.ilike(pattern))
        )
    return [
        SellerRow(
            id=user.id,
            email=user.email,
            display_name=display_name,
            slug=slug,
            created_at=user.created_at,
            verified=user.email_verified_at is not None,
            suspended_at=user.suspended_at,
            deleted_at=user.deleted_at,
        )
        for user, display_name, slug in session.execute(statement)
    ]


@dataclass(frozen=True)
class DisputeRow:
    transaction: Transaction
    request_id: uuid.UUID | None
    seller_email: str
    ledger: list[LedgerEntry]  # what the dispute did to the seller's balance (hold, release, reversal)

    @property
    def open(self) -> bool:
        return self.transaction.payment_state == PaymentState.DISPUTED

    @property
    def balance_effect_cents(self) -> int:
        return sum(int(entry.amount_cents) for entry in self.ledger)


DISPUTE_KINDS = (LedgerKind.DISPUTE_HOLD, LedgerKind.DISPUTE_RELEASE, LedgerKind.REVERSAL)


def list_disputes(session: Session, *, limit: int = LIST_LIMIT) -> list[DisputeRow]:
    """Every disputed payment, open or settled, most recent dispute first, each with the ledger
    rows the dispute wrote for its call."""
    rows = session.execute(
        select(Transaction, CallRequest.id, User.email)
        .outerjoin(CallRequest, CallRequest.transaction_id == Transaction.id)
        .join(User, User.id == Transaction.seller_id)
        .where(Transaction.disputed_at.is_not(None))
        .order_by(Transaction.disputed_at.desc(), Transaction.id)
        .limit(limit)
    ).all()
    request_ids = [request_id for _, request_id, _ in rows if request_id is not None]
    entries: dict[uuid.UUID | None, list[LedgerEntry]] = {}
    for entry in session.scalars(
        select(LedgerEntry)
        .where(LedgerEntry.call_request_id.in_(request_ids), LedgerEntry.kind.in_(DISPUTE_KINDS))
        .order_by(LedgerEntry.created_at, LedgerEntry.id)
    ):
        if entry.call_request_id is not None:
            entries.setdefault(entry.call_request_id, []).append(entry)
    return [
        DisputeRow(
            transaction=t,
            request_id=request_id,
            seller_email=email,
            ledger=entries.get(request_id, []) if request_id else [],
        )
        for t, request_id, email in rows
    ]


def query_events(session: Session, *, type: str = "", ref: str = "", limit: int = LIST_LIMIT) -> list[EventLog]:
    """The audit trail, newest first. ``type`` matches exactly or as a dotted prefix
    (``admin`` finds ``admin.seller_suspended``); ``ref`` is an exact reference id."""
    statement = select(EventLog).order_by(EventLog.created_at.desc(), EventLog.id).limit(limit)
    type = (type or "").strip().rstrip(".")
    if type:
        prefix = type.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ".%"
        statement = statement.where(or_(EventLog.type == type, EventLog.type.like(prefix)))
    ref = (ref or "").strip()
    if ref:
        statement = statement.where(EventLog.ref_id == ref)
    return list(session.scalars(statement))


@dataclass(frozen=True)
class DayTotals:
    day: date
    calls_completed: int
    buyer_no_shows: int
    gross_cents: int
    fee_cents: int
    net_cents: int
    refunded_cents: int


def daily_summary(session: Session, *, now: datetime, days: int = 30) -> list[DayTotals]:
    """Per UTC day, newest first, over the last ``days`` days: calls that took place, buyer
    no-shows (the seller keeps the money), and the gross, platform fee and seller net of both,
    with any amount refunded afterwards shown apart. The fee and the net are the call's
    settlement where it has one (a call the seller ended early kept only part of the price).
    Days without calls are left out."""
    days = max(1, min(days, SUMMARY_DAYS_MAX))
    finished_at = func.coalesce(CallRequest.ended_at, CallRequest.cancelled_at)
    day = cast(func.timezone("UTC", finished_at), Date).label("day")
    completed = CallRequest.status == RequestStatus.COMPLETED
    since = datetime.combine(now.astimezone(UTC).date() - timedelta(days=days - 1), datetime.min.time(), UTC)
    rows = session.execute(
        select(
            day,
            func.count(case((completed, 1))),
            func.count(case((~completed, 1))),
            func.sum(Transaction.gross_cents),
            func.sum(func.coalesce(CallSettlement.fee_cents, Transaction.platform_fee_cents)),
            func.sum(func.coalesce(CallSettlement.net_cents, Transaction.net_cents)),
            func.sum(Transaction.refunded_cents),
        )
        .join(Transaction, Transaction.id == CallRequest.transaction_id)
        .outerjoin(CallSettlement, CallSettlement.call_request_id == CallRequest.id)
        .where(
            or_(
                completed,
                (CallRequest.status == RequestStatus.CANCELLED)
                & (CallRequest.cancel_reason == CancelReason.BUYER_NO_SHOW),
            ),
            finished_at >= since,
        )
        .group_by(day)
        .order_by(day.desc())
    )
    return [DayTotals(*(row[0], *(int(value or 0) for value in row[1:]))) for row in rows]


def summary_totals(rows: list[DayTotals]) -> DayTotals | None:
    """The sum of ``rows`` (its ``day`` is the earliest day), or None for no rows."""
    if not rows:
        return None
    return DayTotals(
        day=min(row.day for row in rows),
        calls_completed=sum(row.calls_completed for row in rows),
        buyer_no_shows=sum(row.buyer_no_shows for row in rows),
        gross_cents=sum(row.gross_cents for row in rows),
        fee_cents=sum(row.fee_cents for row in rows),
        net_cents=sum(row.net_cents for row in rows),
        refunded_cents=sum(row.refunded_cents for row in rows),
    )
