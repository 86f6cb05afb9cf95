"""The seller's dashboard as an overview: what needs them now, what they earned, what buyers said.

Read-only. Everything the dashboard shows comes from ``load_overview`` in a handful of queries;
the live update (``app/live.py``) simply renders it again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, joinedload

from app.models import CallRequest, LedgerEntry, LedgerKind, Profile, RequestStatus, User
from app.services.profiles import get_profile, seller_unavailable_reason
from app.services.ratings import RatingSummary, ReceivedRating, rating_summary, recent_ratings

PENDING_SHOWN = 50
RECENT_SHOWN = 5
FINISHED = (RequestStatus.COMPLETED, RequestStatus.CANCELLED, RequestStatus.DECLINED)
# When a finished request finished (ix_call_requests_seller_finished walks a seller's in this order).
FINISHED_AT = func.coalesce(CallRequest.ended_at, CallRequest.cancelled_at, CallRequest.declined_at)


@dataclass(frozen=True)
class Earnings:
    week_cents: int  # since Monday 00:00 UTC
    month_cents: int  # since the 1st, 00:00 UTC
    currency: str


@dataclass(frozen=True)
class Overview:
    profile: Profile | None
    status: str  # "live", "setup" (no profile yet), or an unavailable reason
    pending: list[CallRequest]  # waiting for an answer, the first to expire first
    calls: list[CallRequest]  # accepted and not over: the seller can join now
    recent: list[CallRequest]  # the finished requests, the last to finish first
    earnings: Earnings
    rating: RatingSummary
    ratings: list[ReceivedRating]

    @property
    def needs_action(self) -> bool:
        return bool(self.pending or self.calls)


def load_overview(session: Session, *, user: User, now: datetime, currency: str) -> Overview:
    profile = get_profile(session, user.id)
    status = "setup" if profile is None else (seller_unavailable_reason(user, profile) or "live")
    return Overview(
        profile=profile,
        status=status,
        pending=_requests(
            session,
            user.id,
            CallRequest.status == RequestStatus.PENDING,
            CallRequest.expires_at > now,
            order=CallRequest.expires_at.asc(),
            limit=PENDING_SHOWN,
        ),
        calls=_requests(
            session,
            user.id,
            CallRequest.status == RequestStatus.ACCEPTED,
            order=CallRequest.accepted_at.asc(),
            limit=PENDING_SHOWN,
        ),
        recent=_requests(
            session, user.id, CallRequest.status.in_(FINISHED), order=FINISHED_AT.desc(), limit=RECENT_SHOWN
        ),
        earnings=earnings(session, user.id, now=now, currency=profile.currency if profile else currency),
        rating=rating_summary(session, user.id),
        ratings=recent_ratings(session, user.id, limit=RECENT_SHOWN),
    )


def _requests(
    session: Session, seller_id: uuid.UUID, *conditions: ColumnElement[bool], order: ColumnElement[Any], limit: int
) -> list[CallRequest]:
    return list(
        session.scalars(
            select(CallRequest)
            .options(joinedload(CallRequest.transaction))
            .where(CallRequest.seller_id == seller_id, *conditions)
            .order_by(order)
            .limit(limit)
        )
    )


def week_start(now: datetime) -> datetime:
    """Monday 00:00 UTC of ``now``'s week."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def earnings(session: Session, seller_id: uuid.UUID, *, now: datetime, currency: str) -> Earnings:
    """What the seller earned (net, in their currency) this week and this month, from the ledger."""
    earned = (
        LedgerEntry.seller_id == seller_id,
        LedgerEntry.kind == LedgerKind.EARNING,
        LedgerEntry.currency == currency,
    )
    week, month = session.execute(
        select(
            func.coalesce(func.sum(LedgerEntry.amount_cents).filter(LedgerEntry.created_at >= week_start(now)), 0),
            func.coalesce(func.sum(LedgerEntry.amount_cents).filter(LedgerEntry.created_at >= month_start(now)), 0),
        ).where(*earned, LedgerEntry.created_at >= min(week_start(now), month_start(now)))
    ).one()
    return Earnings(week_cents=int(week), month_cents=int(month), currency=currency)
