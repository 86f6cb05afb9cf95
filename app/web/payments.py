"""The buyer's way to pay: the paywall form's POST, the checkout API, and the pages after checkout.

``POST /u/<slug>`` and ``POST /api/payments/checkout`` open a Checkout Session and send the buyer
there (303 / ``checkoutUrl``). ``/success`` is the buyer's status page (it updates itself through
``GET /api/requests/status`` and, without JavaScript, by refreshing); ``/cancel`` is where an
abandoned checkout lands. Nothing here fulfils a payment: only the verified webhook does.

Whoever starts a checkout gets a cookie holding a random key for it (HttpOnly, SameSite=Lax so
that it comes back on Stripe's redirect to ``/success``, Secure over HTTPS); the status page and
its API show the buyer's join link only to a browser that presents it. See
``app/services/buyer_status.py``.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime
from typing import cast

from email_validator import EmailNotValidError, validate_email
from flask import Blueprint, Response, abort, current_app, jsonify, redirect, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response as BaseResponse

from app import live
from app.db import db, utcnow
from app.errors import ApiError, refusal_status
from app.extensions import limiter, redis_client
from app.formats import call_length, format_money, format_when
from app.integrations.payments import payment_gateway
from app.models import Checkout
from app.refusals import Refusal
from app.services.buyer_status import abandoned_checkout, buyer_status, hash_browser_key
from app.services.checkout import CHECKOUT_TTL, start_checkout
from app.services.paywall import load_paywall
from app.services.scheduling import ScheduleConfig, parse_instants
from app.web.forms.paywall import NOTE_MAX, PaywallForm
from app.web.live import page_version
from app.web.paywall import render_paywall

bp = Blueprint("payments", __name__)

# Each attempt opens a session at Stripe: generous for a person, a wall for a script.
checkout_limit = limiter.shared_limit("20/minute;200/hour", scope="checkout", methods=["POST"])
REFRESH_SECONDS = 5  # the same page without JavaScript
BROWSER_KEY_COOKIE = "chatlink_checkout_"


def _browser_key_cookie(session_id: str) -> str:
    """One cookie per checkout, so a browser that buys twice keeps both links. The name carries
    a digest of the session id rather than the id itself."""
    return BROWSER_KEY_COOKIE + hashlib.sha256(session_id.encode()).hexdigest()[:16]


def _browser_key(session_id: str) -> str | None:
    return request.cookies.get(_browser_key_cookie(session_id))


def _give_browser_key(response: BaseResponse, checkout: Checkout, key: str) -> BaseResponse:
    settings = current_app.extensions["settings"]
    # Long enough for the seller to answer and for the call to happen; then the link is moot.
    lifetime = CHECKOUT_TTL.total_seconds() + settings.request_ttl_seconds + settings.join_window_seconds
    response.set_cookie(
        _browser_key_cookie(checkout.stripe_checkout_session_id or ""),
        key,
        max_age=int(lifetime + settings.call_duration_seconds),
        path="/",
        secure=request.is_secure or settings.app_url.startswith("https://"),
        httponly=True,
        samesite="Lax",
    )
    return response


def _start(
    slug: str,
    email: str,
    note: str,
    submission_key: str,
    browser_key: str,
    proposed_starts: list[datetime] | None = None,
    time_zone: str | None = None,
) -> Checkout:
    settings = current_app.extensions["settings"]
    return start_checkout(
        db.session,
        slug=slug,
        buyer_email=email,
        note=note,
        submission_key=submission_key,
        browser_key_hash=hash_browser_key(browser_key),
        gateway=payment_gateway(settings, redis_client()),
        app_url=settings.app_url,
        app_env=settings.app_env,
        capture_manually=settings.payment_capture == "manual",
        now=utcnow(),
        proposed_starts=proposed_starts or (),
        buyer_time_zone=time_zone,
        schedule=ScheduleConfig.from_settings(settings),
        call_seconds=settings.call_duration_seconds,
    )


@bp.post("/u/<slug>")
@checkout_limit
def paywall_checkout(slug: str) -> ResponseReturnValue:
    form = PaywallForm()
    if form.validate_on_submit():
        key = secrets.token_urlsafe(32)
        try:
            zone, starts = form.proposals()
            checkout = _start(
                slug,
                form.buyer_email.data or "",
                form.note.data or "",
                form.submission_key.data or "",
                key,
                starts,
                zone,
            )
        except Refusal as refusal:
            db.session.rollback()
            return _paywall_again(slug, form, refusal_status(refusal), refusal.message)
        db.session.commit()
        return _give_browser_key(redirect(checkout.checkout_url or "/", 303), checkout, key)
    return _paywall_again(slug, form, 422, None)


def _paywall_again(slug: str, form: PaywallForm, status: int, message: str | None) -> Response:
    view = load_paywall(db.session, slug.lower())
    if view is None or view.unavailable_reason == "deleted":
        abort(404, description="No seller has this link. Check the address, or ask the seller for theirs.")
    return render_paywall(view, form, status, message=message)


@bp.post("/api/payments/checkout")
@checkout_limit
def api_checkout() -> ResponseReturnValue:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "Send a JSON object with slug and buyerEmail.")
    slug, email, note = body.get("slug"), body.get("buyerEmail"), body.get("note") or ""
    fields: dict[str, str] = {}
    if not isinstance(slug, str) or not slug.strip():
        fields["slug"] = "Name the seller's slug."
    if not isinstance(email, str) or not _valid_email(email):
        fields["buyerEmail"] = "Enter an email address like name@example.com."
    if not isinstance(note, str) or len(note) > NOTE_MAX:
        fields["note"] = f"Keep the note under {NOTE_MAX} characters."
    if fields:
        raise ApiError(422, "Some fields need attention.", fields=fields)
    # Omitted (or empty): as soon as possible, exactly as before scheduling existed.
    starts = parse_instants(body.get("proposedStarts"), field="proposedStarts")
    time_zone = body.get("timeZone")
    if time_zone is not None and not isinstance(time_zone, str):
        raise ApiError(422, "timeZone is an IANA name such as Europe/Paris.", fields={"timeZone": "IANA name"})
    # A client retrying the same purchase sends the same key and gets the same session back.
    key = request.headers.get("Idempotency-Key") or body.get("submissionKey") or secrets.token_urlsafe(24)
    # Printable ASCII only: a header is not checked by the input guard, and the key is stored.
    if not isinstance(key, str) or not 16 <= len(key) <= 64 or not (key.isascii() and key.isprintable()):
        raise ApiError(422, "The idempotency key must be 16 to 64 characters.", fields={"submissionKey": "16-64"})
    browser_key = secrets.token_urlsafe(32)
    checkout = _start(cast(str, slug), cast(str, email), cast(str, note), key, browser_key, starts, time_zone)
    db.session.commit()
    response = jsonify(checkoutUrl=checkout.checkout_url, sessionId=checkout.stripe_checkout_session_id)
    response.status_code = 201
    return _give_browser_key(response, checkout, browser_key)


def _valid_email(value: str) -> bool:
    if len(value) > 254:
        return False
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


@bp.get("/success")
def success() -> ResponseReturnValue:
    settings = current_app.extensions["settings"]
    session_id = request.args.get("session_id", "")[:255]
    version = page_version(live.checkout_channel(session_id))  # before the data (app/live.py)
    status = buyer_status(
        db.session,
        session_id,
        browser_key=_browser_key(session_id),
        app_url=settings.app_url,
        secret_key=settings.secret_key,
    )
    if status is None:
        abort(404, description="We could not find this payment. Check the link in your email.")
    response = Response(
        render_template(
            "checkout/status.html",
            view=status,
            amount=format_money(status.amount_cents, status.currency),
            capture_manual=settings.payment_capture == "manual",
            call_label=call_length(settings.call_duration_seconds),
            live_version=version,
            # Without JavaScript: quick while the payment is confirmed, then gently.
            refresh_seconds=REFRESH_SECONDS if status.status == "processing" else 30,
            in_buyer_zone=lambda value: format_when(value, status.time_zone),
        )
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/cancel")
def cancel() -> ResponseReturnValue:
    try:
        checkout_id = uuid.UUID(request.args.get("checkout", ""))
    except ValueError:
        checkout_id = None
    seller = abandoned_checkout(db.session, checkout_id) if checkout_id else None
    return render_template("checkout/cancel.html", seller=seller)


@bp.get("/api/requests/status")
@limiter.exempt  # polled every few seconds by the status page
def api_status() -> ResponseReturnValue:
    session_id = request.args.get("session_id", "")
    if not session_id:
        raise ApiError(400, "Pass session_id, the id in your status page's address.")
    settings = current_app.extensions["settings"]
    session_id = session_id[:255]
    status = buyer_status(
        db.session,
        session_id,
        browser_key=_browser_key(session_id),
        app_url=settings.app_url,
        secret_key=settings.secret_key,
    )
    if status is None:
        raise ApiError(404, "No payment has this session id.")
    response = jsonify(status.to_json())
    response.headers["Cache-Control"] = "no-store"
    return response
