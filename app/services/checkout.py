"""Money in, the buyer's side: starting a checkout from the paywall, and what the buyer sees after.

A checkout is a row in ``checkouts`` (seller, email, the buyer's note, the amount) tied to one
Checkout Session at the gateway. The note never leaves our database; the session carries only
ids in its metadata. The form's ``submission_key`` is UNIQUE, so a double submit (a double
click, a back-and-resubmit, two tabs racing) finds the first attempt and sends the buyer to the
same session instead of opening a second one.

The paid request is created only by the verified webhook (``stripe_events`` calls
``fulfil_checkout``), never by the buyer's return to the success page.
What the buyer sees afterwards is in ``app/services/buyer_status.py``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Uuid, bindparam, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app import metrics
from app.config import Settings
from app.db import on_commit
from app.formats import call_length, format_money, format_when, iso
from app.integrations.payments import CheckoutRequest, CheckoutSnapshot, PaymentError, PaymentGateway
from app.models import (
    CallRequest,
    CancelReason,
    Checkout,
    CheckoutStatus,
    PaymentState,
    Profile,
    User,
)
from app.observability import mask_email
from app.refusals import Conflict, Forbidden, NotFound, Unavailable
from app.services.audit import record_event
from app.services.availability import check_time_zone, load_availability
from app.services.blocks import is_blocked, normalise_email
from app.services.fees import split_fee
from app.services.lifecycle.decisions import open_request
from app.services.outbox import queue_email
from app.services.profiles import seller_unavailable_reason
from app.services.scheduling import ScheduleConfig, check_proposals

log = logging.getLogger(__name__)

APP_TAG = "chatlink"  # metadata["app"] on everything we create at Stripe
# Stripe accepts expires_at from 30 minutes to 24 hours after the session's creation, measured
# on its clock when the request arrives; the extra minute keeps network delay and clock skew
# from pushing us under the minimum.
CHECKOUT_TTL = timedelta(minutes=30, seconds=60)

_UNAVAILABLE = {
    "deleted": "This seller is no longer on ChatLink.",
    "suspended": "{name} is not taking calls right now.",
    "unverified": "{name} is not taking calls right now.",
    "paused": "{name} is not taking calls right now.",
}


def start_checkout(
    session: Session,
    *,
    slug: str,
    buyer_email: str,
    note: str,
    submission_key: str,
    gateway: PaymentGateway,
    app_url: str,
    app_env: str,
    capture_manually: bool,
    now: datetime,
    browser_key_hash: str | None = None,
    proposed_starts: Sequence[datetime] = (),
    buyer_time_zone: str | None = None,
    schedule: ScheduleConfig | None = None,
    call_seconds: int = Settings.call_duration_seconds,
) -> Checkout:
    """Open (or, for a repeated ``submission_key``, find again) the checkout for this buyer.

    ``proposed_starts`` (at most three; none: as soon as possible) must fit the seller's hours and
    the card-hold window (``scheduling.check_proposals``); ``buyer_time_zone`` is an IANA name.

    ``browser_key_hash`` is the hash of the key the caller gives the submitting browser; a
    repeated submission rebinds the checkout to the newest key (the same form is only ever in
    one browser, whose cookie the repeat's answer overwrites). ``call_seconds`` (the setting
    CALL_DURATION_SECONDS) names the product at the checkout.

    Raises a refusal: 404 unknown seller, 409 seller not taking calls, 403 blocked
    email, 503 the gateway failed (the caller rolls back, so nothing is kept), 422 proposed
    times or a zone the rules refuse.
    """
    user, profile = _seller(session, slug)
    email = normalise_email(buyer_email)
    _check_seller(session, user, profile, email)
    zone = check_time_zone(buyer_time_zone) if buyer_time_zone is not None else None
    proposals: list[datetime] = []
    if proposed_starts:
        assert schedule is not None, "proposed times are checked against the schedule's settings"
        availability = load_availability(session, user.id)
        proposals = check_proposals(
            proposed_starts, availability=availability, now=now, config=schedule, field="proposedStarts"
        )
    existing = _by_submission_key(session, submission_key)
    if existing is not None:
        return _rebind(session, _same_attempt(existing, user.id), browser_key_hash)
    checkout_id = uuid.uuid4()
    inserted = session.execute(
        insert(Checkout)
        .values(
            id=checkout_id,
            seller_id=user.id,
            buyer_email=email,
            note=note.strip(),
            proposed_starts=proposals,
            buyer_time_zone=zone,
            amount_cents=profile.price_cents,
            currency=profile.currency,
            submission_key=submission_key,
            browser_key_hash=browser_key_hash,
            status=CheckoutStatus.OPEN,
            expires_at=now + CHECKOUT_TTL,
        )
        .on_conflict_do_nothing(index_elements=["submission_key"])
        .returning(Checkout.id)
    ).scalar_one_or_none()
    if inserted is None:
        # A concurrent submit of the same form won the insert; it has committed by now.
        return _rebind(session, _same_attempt(_by_submission_key(session, submission_key), user.id), browser_key_hash)
    request = CheckoutRequest(
        seller_id=str(user.id),
        seller_name=profile.display_name,
        product_name=f"{call_length(call_seconds)} video call with {profile.display_name}",
        checkout_id=str(checkout_id),
        amount_cents=profile.price_cents,
        currency=profile.currency,
        buyer_email=email,
        capture_manually=capture_manually,
        success_url=f"{app_url}/success?session_id={{CHECKOUT_SESSION_ID}}",
        cancel_url=f"{app_url}/cancel?checkout={checkout_id}",
        expires_at=int((now + CHECKOUT_TTL).timestamp()),
        metadata={"app": APP_TAG, "env": app_env, "seller_id": str(user.id), "checkout_id": str(checkout_id)},
    )
    try:
        created = gateway.create_checkout(request)
    except PaymentError as error:
        log.warning("checkout creation failed", extra={"code": error.code, "transient": error.transient})
        raise Unavailable("payment_unavailable", "We could not start the payment. Please try again.") from error
    session.execute(
        update(Checkout)
        .where(Checkout.id == checkout_id)
        .values(stripe_checkout_session_id=created.session_id, checkout_url=created.url)
        .execution_options(synchronize_session=False)
    )
    log.info("checkout started", extra={"checkout_id": str(checkout_id), "buyer": mask_email(email)})
    on_commit(session, metrics.checkout_started)
    started = _by_submission_key(session, submission_key)
    assert started is not None, "the row inserted above"
    return started


def _seller(session: Session, slug: str) -> tuple[User, Profile]:
    row = session.execute(
        select(User, Profile).join(Profile, Profile.user_id == User.id).where(Profile.slug == slug.strip().lower())
    ).one_or_none()
    if row is None or row[0].deleted_at is not None:
        raise NotFound("not_found", "No seller has this link.")
    return row[0], row[1]


def _check_seller(session: Session, user: User, profile: Profile, email: str) -> None:
    reason = seller_unavailable_reason(user, profile)
    if reason is not None:
        message = _UNAVAILABLE.get(reason, "{name} is not taking calls right now.")
        raise Conflict("seller_unavailable", message.format(name=profile.display_name))
    if is_blocked(session, user.id, email):
        raise Forbidden("blocked", f"Sorry, {profile.display_name} is not taking requests from this email address.")


def _by_submission_key(session: Session, submission_key: str) -> Checkout | None:
    return session.execute(
        select(Checkout).where(Checkout.submission_key == submission_key).execution_options(populate_existing=True)
    ).scalar_one_or_none()


def _same_attempt(existing: Checkout | None, seller_id: uuid.UUID) -> Checkout:
    if existing is None or existing.seller_id != seller_id or not existing.checkout_url:
        raise Conflict("form_reused", "This form was already used. Please reload the page and try again.")
    if existing.status != CheckoutStatus.OPEN:
        raise Conflict("checkout_closed", "This checkout has ended. Please reload the page to start again.")
    return existing


def _rebind(session: Session, checkout: Checkout, browser_key_hash: str | None) -> Checkout:
    if browser_key_hash is None:
        return checkout
    session.execute(
        update(Checkout)
        .where(Checkout.id == checkout.id)
        .values(browser_key_hash=browser_key_hash)
        .execution_options(synchronize_session=False)
    )
    checkout.browser_key_hash = browser_key_hash
    return checkout


# --- Fulfilment: the webhook's half ------------------------------------------------------------


def fulfil_checkout(
    session: Session,
    checkout: Checkout,
    snapshot: CheckoutSnapshot,
    state: PaymentState,
    *,
    platform_fee_bps: int,
    request_ttl_seconds: int,
    now: datetime,
) -> CallRequest | None:
    """One transaction: the Transaction, the CallRequest and the emails. None when this session
    was fulfilled already (the UNIQUE session id makes a concurrent second attempt wait for the
    first and then insert nothing)."""
    fee, net = split_fee(snapshot.amount_total, platform_fee_bps)
    transaction_id = _insert_transaction(session, checkout, snapshot, state, fee=fee, net=net, now=now)
    if transaction_id is None:
        return None
    emails = {checkout.buyer_email, (snapshot.customer_email or "").strip().lower()} - {""}
    call_request = open_request(
        session,
        seller_id=checkout.seller_id,
        transaction_id=transaction_id,
        buyer_email=checkout.buyer_email,
        note=checkout.note,
        refused=_refusal_at_payment(session, checkout.seller_id, emails),
        request_ttl_seconds=request_ttl_seconds,
        now=now,
        proposed_starts=checkout.proposed_starts,
        buyer_time_zone=checkout.buyer_time_zone,
        capture_before=snapshot.capture_before,
    )
    session.execute(
        update(Checkout)
        .where(Checkout.id == checkout.id, Checkout.status != CheckoutStatus.COMPLETE)
        .values(status=CheckoutStatus.COMPLETE)
        .execution_options(synchronize_session=False)
    )
    payload = {"session_id": snapshot.session_id, "gross_cents": snapshot.amount_total, "state": state.value}
    record_event(session, "payment.received", ref_id=call_request.id, actor="stripe", payload=payload)
    context = _email_context(call_request, snapshot, state, net, request_ttl_seconds)
    _queue_emails(session, call_request, context, refused=call_request.cancel_reason is not None)
    on_commit(session, metrics.checkout_completed)
    return call_request


def _refusal_at_payment(session: Session, seller_id: uuid.UUID, buyer_emails: set[str]) -> CancelReason | None:
    """Why a payment that arrived may not become a request, checked again now because a block or a
    suspension may have landed since the checkout started: the seller blocked the buyer, or the
    seller may no longer sell (suspended, or gone)."""
    seller = session.get(User, seller_id)
    if seller is None or seller.suspended_at is not None or seller.deleted_at is not None:
        return CancelReason.SUSPENDED
    if any(is_blocked(session, seller_id, email) for email in buyer_emails):
        return CancelReason.BLOCKED
    return None


# SQL rather than ``postgresql.insert``, whose ON CONFLICT form SQLAlchemy compiles again on
# every call (see stripe_events._INSERT_EVENT).
_INSERT_TRANSACTION = text(
    "INSERT INTO transactions (id, seller_id, buyer_email, stripe_checkout_session_id, stripe_payment_intent_id,"
    " gross_cents, platform_fee_cents, net_cents, currency, payment_state, refunded_cents, captured_at,"
    " capture_before, created_at, updated_at)"
    " VALUES (:id, :seller_id, :buyer_email, :session_id, :intent_id, :gross, :fee, :net, :currency, :state, 0,"
    " :captured_at, :capture_before, :now, :now)"
    " ON CONFLICT DO NOTHING RETURNING id"
).bindparams(bindparam("id", type_=Uuid()), bindparam("seller_id", type_=Uuid()))


def _insert_transaction(
    session: Session,
    checkout: Checkout,
    snapshot: CheckoutSnapshot,
    state: PaymentState,
    *,
    fee: int,
    net: int,
    now: datetime,
) -> uuid.UUID | None:
    """INSERT ... ON CONFLICT DO NOTHING on the session and PaymentIntent ids: the new row's id,
    or None when this payment was recorded already."""
    return session.execute(
        _INSERT_TRANSACTION,
        {
            "id": uuid.uuid4(),
            "seller_id": checkout.seller_id,
            "buyer_email": checkout.buyer_email,
            "session_id": snapshot.session_id,
            "intent_id": snapshot.payment_intent_id,
            "gross": snapshot.amount_total,
            "fee": fee,
            "net": net,
            "currency": snapshot.currency or checkout.currency,
            "state": state.value,
            "captured_at": now if state == PaymentState.CAPTURED else None,
            "capture_before": snapshot.capture_before,
            "now": now,
        },
    ).scalar_one_or_none()


def _email_context(
    call_request: CallRequest, snapshot: CheckoutSnapshot, state: PaymentState, net: int, ttl_seconds: int
) -> dict[str, Any]:
    """What the emails may say; JSON, because it is stored on the outbox row."""
    return {
        "request_id": str(call_request.id),
        "session_id": snapshot.session_id,
        "buyer_email": call_request.buyer_email,
        "note": call_request.note,
        "amount": format_money(snapshot.amount_total, snapshot.currency),
        "net_amount": format_money(net, snapshot.currency),
        "gross_cents": snapshot.amount_total,
        "net_cents": net,
        "currency": snapshot.currency,
        "held": state == PaymentState.HELD,
        "expires_at": iso(call_request.expires_at),
        "answer_hours": max(1, round(ttl_seconds / 3600)),
    }


def _queue_emails(session: Session, call_request: CallRequest, context: dict[str, Any], *, refused: bool) -> None:
    """The seller hears of the new request and the buyer that the payment arrived; a refused
    buyer only hears that the money is released. The dedupe keys make a repeat queue nothing."""
    seller = session.execute(
        select(User.email, Profile.display_name)
        .outerjoin(Profile, Profile.user_id == User.id)
        .where(User.id == call_request.seller_id)
    ).one()
    context = {**context, "seller_name": seller.display_name or "The seller"}
    key = call_request.id
    if refused:
        queue_email(
            session,
            recipient=call_request.buyer_email,
            template="payment_released_buyer",
            context=context,
            dedupe_key=f"payment_released:buyer:{key}",
        )
        return
    buyer_zone = call_request.buyer_time_zone or "UTC"
    seller_zone = load_availability(session, call_request.seller_id).time_zone
    queue_email(
        session,
        recipient=seller.email,
        template="request_created_seller",
        context=context | _proposals_context(call_request, seller_zone),
        dedupe_key=f"request_created:seller:{key}",
    )
    queue_email(
        session,
        recipient=call_request.buyer_email,
        template="payment_received_buyer",
        context=context | _proposals_context(call_request, buyer_zone),
        dedupe_key=f"payment_received:buyer:{key}",
    )


def _proposals_context(call_request: CallRequest, zone: str) -> dict[str, Any]:
    """The proposed times and the answer's deadline as the reader of the email reads them."""
    if not call_request.proposed_starts:
        return {"proposed_texts": []}
    return {
        "proposed_texts": [format_when(start, zone) for start in call_request.proposed_starts],
        "answer_by_text": format_when(call_request.expires_at, zone),
    }
