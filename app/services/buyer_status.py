"""What the buyer sees after checkout: the status page, ``GET /api/requests/status`` and the
cancel page.

The Checkout Session id is not a credential: it travels in URLs, logs, exports and Stripe's
dashboard. Anyone holding it sees where the request stands; the buyer's join link is added only
for the browser that started the checkout. That browser got a random key in a cookie when it
submitted the paywall (or ``POST /api/payments/checkout``); the checkout row keeps only the key's
SHA-256 (``browser_key_hash``), so neither the database nor an export can give the key away. The
buyer always gets the link by email as well. The same goes for the "report a problem" link once
the call is over; what happened and what it means for the money (``outcome``) is for anyone.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.formats import iso
from app.models import CallRequest, Checkout, Profile, RequestStatus, Transaction
from app.refusals import Forbidden, NotFound
from app.services.calls import after_the_call
from app.services.lifecycle.decisions import buyer_cancel_pending
from app.services.ratings import buyer_rating
from app.services.requests import accepted_join_url


def hash_browser_key(key: str) -> str:
    """What the checkout row keeps of the browser's key."""
    return hashlib.sha256(key.encode()).hexdigest()


def _browser_matches(checkout: Checkout, browser_key: str | None) -> bool:
    if not browser_key or not checkout.browser_key_hash:
        return False
    return hmac.compare_digest(hash_browser_key(browser_key), checkout.browser_key_hash)


@dataclass(frozen=True)
class BuyerStatus:
    """The buyer's status page and ``GET /api/requests/status``, read in one query."""

    session_id: str
    status: str  # processing | pending | accepted | declined | cancelled | completed
    seller_name: str
    seller_slug: str | None
    request_id: uuid.UUID | None
    expires_at: datetime | None
    cancel_reason: str | None
    amount_cents: int
    currency: str
    join_url: str | None = None  # the buyer's link to the call, once accepted
    join_deadline: datetime | None = None  # join by then, or the call is cancelled
    # For the browser that paid only: it may cancel while pending, and rate once the call ended.
    can_cancel: bool = False
    rate_url: str | None = None
    rated_stars: int | None = None
    proposed_starts: tuple[datetime, ...] = ()
    scheduled_start: datetime | None = None  # the start the seller accepted (None: right away)
    time_zone: str = "UTC"  # the buyer's, as they paid
    outcome: str | None = None  # once the call is settled: what happened, and what it means for the money
    problem_url: str | None = None  # "report a problem with this call", for 48 hours after its end

    @property
    def is_final(self) -> bool:
        return self.status in ("declined", "cancelled", "completed")

    def to_json(self) -> dict[str, object]:
        return {
            "status": self.status,
            "requestId": str(self.request_id) if self.request_id else None,
            "sellerName": self.seller_name,
            "expiresAt": iso(self.expires_at),
            "cancelReason": self.cancel_reason,
            "joinUrl": self.join_url,
            "joinDeadline": iso(self.join_deadline),
            "canCancel": self.can_cancel,
            "proposedStarts": [iso(start) for start in self.proposed_starts],
            "scheduledStart": iso(self.scheduled_start),
            "outcome": self.outcome,
            "problemUrl": self.problem_url,
        }


def buyer_status(
    session: Session, session_id: str, *, browser_key: str | None, app_url: str, secret_key: str
) -> BuyerStatus | None:
    """Where the paid request of Checkout Session ``session_id`` stands; None if unknown.
    ``processing`` until the webhook has created the request. Anyone with the session id may see
    the state; the buyer's join link (once accepted) is added only when ``browser_key`` is the
    key of the browser that started the checkout."""
    row = session.execute(
        select(Checkout, Profile.display_name, Profile.slug, CallRequest)
        .outerjoin(Profile, Profile.user_id == Checkout.seller_id)
        .outerjoin(Transaction, Transaction.stripe_checkout_session_id == Checkout.stripe_checkout_session_id)
        .outerjoin(CallRequest, CallRequest.transaction_id == Transaction.id)
        .where(Checkout.stripe_checkout_session_id == session_id)
    ).one_or_none()
    if row is None:
        return None
    checkout, name, slug, call_request = row
    after = (
        after_the_call(call_request, "buyer", app_url=app_url, secret_key=secret_key, now=utcnow())
        if call_request
        else {}
    )
    # The problem link carries the buyer's call credential, like the join link: the paying browser's only.
    problem_url = after.get("problem_url")
    status = BuyerStatus(
        session_id=session_id,
        status=call_request.status.value.lower() if call_request else "processing",
        seller_name=name or "The seller",
        seller_slug=slug,
        request_id=call_request.id if call_request else None,
        expires_at=call_request.expires_at if call_request else None,
        cancel_reason=call_request.cancel_reason.value if call_request and call_request.cancel_reason else None,
        amount_cents=checkout.amount_cents,
        currency=checkout.currency,
        join_deadline=call_request.join_deadline if call_request else None,
        proposed_starts=tuple(call_request.proposed_starts if call_request else checkout.proposed_starts),
        scheduled_start=call_request.scheduled_start if call_request else None,
        time_zone=checkout.buyer_time_zone or "UTC",
        outcome=after.get("outcome"),
    )
    if call_request is None or not _browser_matches(checkout, browser_key):
        return status
    status = replace(status, problem_url=problem_url)
    return _for_the_buyer(session, status, call_request, app_url=app_url, secret_key=secret_key)


def _for_the_buyer(
    session: Session, status: BuyerStatus, call_request: CallRequest, *, app_url: str, secret_key: str
) -> BuyerStatus:
    """What only the browser that paid sees: the join link, cancelling, rating."""
    rating = buyer_rating(session, call_request, "buyer", app_url=app_url, secret_key=secret_key)
    return replace(
        status,
        join_url=accepted_join_url(call_request, "buyer", app_url=app_url, secret_key=secret_key),
        can_cancel=call_request.status == RequestStatus.PENDING,
        rate_url=rating.url,
        rated_stars=rating.stars,
    )


def cancel_by_buyer(session: Session, session_id: str, *, browser_key: str | None, now: datetime) -> None:
    """The buyer withdraws their pending request from the status page: only the browser that paid
    may (the Checkout Session id alone is no credential). The hold is released right after commit."""
    row = session.execute(
        select(Checkout, CallRequest.id)
        .join(Transaction, Transaction.stripe_checkout_session_id == Checkout.stripe_checkout_session_id)
        .join(CallRequest, CallRequest.transaction_id == Transaction.id)
        .where(Checkout.stripe_checkout_session_id == session_id)
    ).one_or_none()
    if row is None:
        raise NotFound("not_found", "No paid request has this session id.")
    checkout, request_id = row
    if not _browser_matches(checkout, browser_key):
        raise Forbidden("not_your_browser", "Only the browser you paid from can cancel. Reply to your receipt email.")
    buyer_cancel_pending(session, request_id, now=now)


@dataclass(frozen=True)
class AbandonedCheckout:
    seller_name: str
    seller_slug: str


def abandoned_checkout(session: Session, checkout_id: uuid.UUID) -> AbandonedCheckout | None:
    """The seller of a checkout the buyer walked away from, for the link back to the paywall."""
    row = session.execute(
        select(Profile.display_name, Profile.slug)
        .join(Checkout, Checkout.seller_id == Profile.user_id)
        .where(Checkout.id == checkout_id)
    ).one_or_none()
    return AbandonedCheckout(seller_name=row.display_name, seller_slug=row.slug) if row else None
