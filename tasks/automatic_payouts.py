"""Weekly automatic payouts (``app.services.automatic_payouts``), run hourly by beat.

Each seller on the weekly schedule gets at most one automatic payout per ISO week, however many
beats run this or how often: the seller's row lock and the UNIQUE (seller, week) see to it.
"""

from __future__ import annotations

import logging

from app.celery_app import chatlink_task
from app.db import db, utcnow
from tasks import _runtime

log = logging.getLogger(__name__)


# No retries: the next hourly run picks up whatever this one left.
@chatlink_task(max_retries=0)
def run_automatic_payouts() -> int:
    """Pay every weekly seller whose payout for this week is still due, each in their own
    transaction, so that one refusal does not hold back the others. Returns how many were paid."""
    from app.services import automatic_payouts

    settings = _runtime.settings()
    now = utcnow()
    period = automatic_payouts.iso_period(now)
    with db.session_scope() as session:
        due = automatic_payouts.due_sellers(session, period)
    paid = 0
    for seller_id in due:
        try:
            with db.session_scope() as session:
                payout = automatic_payouts.run_automatic_payout(
                    session, seller_id, period=period, default_currency=settings.currency, now=now
                )
            paid += payout is not None
        except Exception:
            log.exception("automatic payout failed", extra={"seller_id": str(seller_id)})
    return paid
