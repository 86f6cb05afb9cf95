"""``/dashboard``: the seller's home: their link, their status and the requests waiting for them."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, render_template
from flask.typing import ResponseReturnValue
from flask_login import login_required

from app.db import db, utcnow
from app.formats import format_local, format_money, iso
from app.models import RequestStatus
from app.services.profiles import load_dashboard
from app.services.requests import accepted_join_url, list_requests
from app.web.auth import signed_in_user
from app.web.money import balance_card_context

bp = Blueprint("dashboard", __name__)


@bp.after_request
def no_store(response: Response) -> Response:
    # Buyers' emails and notes, and a CSRF token: nothing here belongs in a cache.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/dashboard")
@login_required
def dashboard() -> ResponseReturnValue:
    settings = current_app.extensions["settings"]
    user = signed_in_user()
    view = load_dashboard(db.session, user=user, now=utcnow())
    paywall_url = f"{settings.app_url}/u/{view.profile.slug}" if view.profile else None
    upcoming = [
        (call, accepted_join_url(call, "seller", app_url=settings.app_url, secret_key=settings.secret_key))
        for call in list_requests(db.session, user.id, RequestStatus.ACCEPTED, limit=20)
    ]
    return render_template(
        "dashboard.html",
        view=view,
        user=user,
        paywall_url=paywall_url,
        currency=view.profile.currency if view.profile else settings.currency,
        format_money=format_money,
        capture_manual=settings.payment_capture == "manual",
        upcoming_calls=upcoming,
        payout_next="/dashboard",
        local_time=format_local,
        iso=iso,
        **balance_card_context(user),
    )
