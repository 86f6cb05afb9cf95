"""``/dashboard``: the seller's overview: what needs them now (requests to answer, calls to join),
what they earned, how buyers rate them, their link and their status. It updates itself while open
(``app/live.py``); without JavaScript it refreshes every minute."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, redirect, render_template
from flask.typing import ResponseReturnValue
from flask_login import login_required

from app import live
from app.db import db, utcnow
from app.formats import format_local, format_money, iso
from app.services.overview import load_overview
from app.services.profiles import get_profile
from app.services.requests import accepted_join_url
from app.web.auth import signed_in_user
from app.web.live import page_version
from app.web.money import balance_card_context

bp = Blueprint("dashboard", __name__)
NO_SCRIPT_REFRESH_SECONDS = 60


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
    if user.is_admin and get_profile(db.session, user.id) is None:
        return redirect("/admin")  # an operator, not a seller: their home is the admin area
    version = page_version(live.seller_channel(user.id))  # before the data (app/live.py)
    view = load_overview(db.session, user=user, now=utcnow(), currency=settings.currency)
    join_urls = {
        call.id: accepted_join_url(call, "seller", app_url=settings.app_url, secret_key=settings.secret_key)
        for call in view.calls
    }
    return render_template(
        "dashboard.html",
        view=view,
        user=user,
        paywall_url=f"{settings.app_url}/u/{view.profile.slug}" if view.profile else None,
        currency=view.earnings.currency,
        format_money=format_money,
        capture_manual=settings.payment_capture == "manual",
        join_urls=join_urls,
        live_version=version,
        refresh_seconds=NO_SCRIPT_REFRESH_SECONDS,
        payout_next="/dashboard",
        local_time=format_local,
        iso=iso,
        **balance_card_context(user),
    )
