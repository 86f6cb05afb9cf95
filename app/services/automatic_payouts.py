"""Weekly automatic payouts: the whole available balance, once per ISO week, for sellers who chose it.

Beat runs ``tasks.automatic_payouts.run_automatic_payouts`` every hour; it pays each seller whose payout for
the current week (``2026-W48``) has not happened yet and whose balance reaches the minimum. The
seller's ``users`` row is locked first, exactly as ``payouts.request_payout`` locks it, so an
automatic payout and a seller's own request never both spend the same money, and the UNIQUE
(seller, week) of ``automatic_payouts`` makes a second beat, or a repeated run, a no-op.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import AutomaticPayout, PayoutRequest, PayoutSchedule, PayoutSettings, User
from app.services import connect, ledger, payout_methods, payouts

DUE_LIMIT = 1000


def iso_period(now: datetime) -> str:
    year, week, _ = now.isocalendar()
    return f"{year}-W{week:02d}"


def due_sellers(session: Session, period: str, *, limit: int = DUE_LIMIT) -> list[uuid.UUID]:
    """Sellers on the weekly schedule without an automatic payout this week."""
    paid = select(AutomaticPayout.seller_id).where(AutomaticPayout.period == period)
    query = (
        select(PayoutSettings.seller_id)
        .join(User, User.id == PayoutSettings.seller_id)
        .where(
            PayoutSettings.schedule == PayoutSchedule.WEEKLY,
            User.deleted_at.is_(None),
            User.suspended_at.is_(None),
            PayoutSettings.seller_id.not_in(paid),
        )
        .order_by(PayoutSettings.seller_id)
        .limit(limit)
    )
    return list(session.scalars(query))


def run_automatic_payout(
    session: Session, seller_id: uuid.UUID, *, period: str, default_currency: str, now: datetime
) -> PayoutRequest | None:
    """Request a payout of the seller's whole available balance for ``period``; None when there is
    nothing to do (already paid this week, below the minimum, nowhere to send it)."""
    seller = session.execute(select(User).where(User.id == seller_id).with_for_update()).scalar_one_or_none()
    if seller is None or seller.deleted_at is not None or seller.suspended_at is not None:
        return None
    already = session.scalar(
        select(AutomaticPayout.id).where(AutomaticPayout.seller_id == seller_id, AutomaticPayout.period == period)
    )
    if already is not None:
        return None
    settings = session.scalar(select(PayoutSettings).where(PayoutSettings.seller_id == seller_id))
    if settings is None or settings.schedule != PayoutSchedule.WEEKLY:
        return None
    mode = connect.destination_mode(connect.account_of(session, seller_id), payout_methods.method_view(settings))
    if mode == "none":
        return None
    currency = ledger.seller_currency(session, seller_id, default=default_currency)
    available = ledger.available_cents(session, seller_id, currency)
    if available < payouts.MIN_PAYOUT_CENTS:
        return None
    payout = payouts.request_payout(session, seller_id, available, currency=currency, now=now)
    session.add(AutomaticPayout(seller_id=seller_id, period=period, payout_request_id=payout.id))
    session.flush()
    return payout
