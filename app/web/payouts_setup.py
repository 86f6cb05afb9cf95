"""The seller's payout set-up: Stripe Connect onboarding, the manual method, the schedule.

Page: ``/payouts/setup`` (with its forms), ``/payouts/setup/refresh`` (Stripe's refresh URL: a new
Account Link). JSON: ``POST /api/payouts/onboarding`` → ``{url}``, ``GET /api/payouts/account``,
``POST /api/payouts/method``, ``POST /api/payouts/schedule``, ``POST /api/payouts/dashboard`` → ``{url}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Blueprint, Response, current_app, flash, redirect, render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from app.config import Settings
from app.db import db, utcnow
from app.errors import ApiError
from app.extensions import redis_client
from app.integrations.connect import ConnectGateway, PaymentError, connect_gateway
from app.models import PayoutSchedule, User
from app.refusals import Conflict, Refusal, Unavailable
from app.services import connect, payout_methods

bp = Blueprint("payouts_setup", __name__)

View = TypeVar("View", bound=Callable[..., Any])


def seller_required(view: View) -> View:
    """Flask-Login's ``login_required``, typed (the library ships no type hints)."""
    return cast(View, login_required(view))


SETUP_PATH = "/payouts/setup"


@bp.after_request
def no_store(response: Response) -> Response:
    # Onboarding links are single-use credentials; none of this belongs in a cache.
    response.headers["Cache-Control"] = "no-store"
    return response


def _settings() -> Settings:
    settings: Settings = current_app.extensions["settings"]
    return settings


def _user() -> User:
    user: User = current_user._get_current_object()
    return user


def _gateway() -> ConnectGateway:
    return connect_gateway(_settings(), redis_client())


def _account_view() -> connect.PayoutAccountView:
    return connect.payout_account(db.session, _user().id, connect_countries=_settings().connect_countries)


def _onboarding_url(country: str | None) -> str:
    settings = _settings()
    try:
        url = connect.start_onboarding(
            db.session,
            _user().id,
            gateway=_gateway(),
            country=country,
            connect_countries=settings.connect_countries,
            app_url=settings.app_url,
            app_env=settings.app_env,
            now=utcnow(),
        )
    except PaymentError as error:
        raise _vendor_refusal(error) from error
    db.session.commit()
    return url


def _dashboard_url() -> str:
    try:
        return connect.login_link(db.session, _user().id, gateway=_gateway())
    except PaymentError as error:
        raise _vendor_refusal(error) from error


def _vendor_refusal(error: PaymentError) -> Refusal:
    if error.transient:
        return Unavailable("stripe_unavailable", "Stripe did not answer; please try again in a moment.")
    return Conflict(error.code or "stripe_refused", f"Stripe refused: {error}")


# --- Pages -----------------------------------------------------------------------------------


@bp.get(SETUP_PATH)
@seller_required
def setup_page() -> ResponseReturnValue:
    if request.args.get("connect") == "return":
        flash("Back from Stripe. Your payout status updates as soon as Stripe confirms it.", "info")
        return redirect(SETUP_PATH, 303)
    return render_template("money/payout_setup.html", view=_account_view(), schedules=list(PayoutSchedule))


@bp.get(SETUP_PATH + "/refresh")
@seller_required
def refresh_link() -> ResponseReturnValue:
    """Stripe's ``refresh_url``: the link expired or was used, so make a new one."""
    try:
        url = connect.refresh_link(db.session, _user().id, gateway=_gateway(), app_url=_settings().app_url)
    except PaymentError as error:
        raise _vendor_refusal(error) from error
    except Refusal as refusal:
        flash(refusal.message, "error")
        return redirect(SETUP_PATH, 303)
    return redirect(url, 303)


@bp.post(SETUP_PATH + "/connect")
@seller_required
def start_connect() -> ResponseReturnValue:
    try:
        return redirect(_onboarding_url(request.form.get("country") or None), 303)
    except Refusal as refusal:
        flash(refusal.message, "error")
        return redirect(SETUP_PATH, 303)


@bp.post(SETUP_PATH + "/dashboard")
@seller_required
def open_dashboard() -> ResponseReturnValue:
    try:
        return redirect(_dashboard_url(), 303)
    except Refusal as refusal:
        flash(refusal.message, "error")
        return redirect(SETUP_PATH, 303)


@bp.post(SETUP_PATH + "/method")
@seller_required
def save_method() -> ResponseReturnValue:
    try:
        view = payout_methods.set_method(
            db.session, _user().id, dict(request.form), secret_key=_settings().secret_key, now=utcnow()
        )
    except Refusal as refusal:
        flash(refusal.message, "error")
        return redirect(SETUP_PATH, 303)
    db.session.commit()
    flash(f"Saved: {view.label}. We emailed you about the change.", "success")
    return redirect(SETUP_PATH, 303)


@bp.post(SETUP_PATH + "/schedule")
@seller_required
def save_schedule() -> ResponseReturnValue:
    try:
        chosen = connect.set_schedule(db.session, _user().id, request.form.get("schedule"), now=utcnow())
    except Refusal as refusal:
        flash(refusal.message, "error")
        return redirect(SETUP_PATH, 303)
    db.session.commit()
    flash("Automatic weekly payouts are on." if chosen == PayoutSchedule.WEEKLY else "Payouts are manual.", "success")
    return redirect(SETUP_PATH, 303)


# --- JSON API --------------------------------------------------------------------------------


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if body is None and not request.get_data():
        return {}
    if not isinstance(body, dict):
        raise ApiError(400, "Send a JSON object.")
    return body


@bp.post("/api/payouts/onboarding")
@seller_required
def api_onboarding() -> ResponseReturnValue:
    country = _json_body().get("country")
    return {"url": _onboarding_url(country if isinstance(country, str) else None)}


@bp.get("/api/payouts/account")
@seller_required
def api_account() -> ResponseReturnValue:
    return _account_view().as_json()


@bp.post("/api/payouts/method")
@seller_required
def api_method() -> ResponseReturnValue:
    body = _json_body()
    payout_methods.set_method(db.session, _user().id, body, secret_key=_settings().secret_key, now=utcnow())
    db.session.commit()
    return _account_view().as_json()


@bp.post("/api/payouts/schedule")
@seller_required
def api_schedule() -> ResponseReturnValue:
    connect.set_schedule(db.session, _user().id, _json_body().get("schedule"), now=utcnow())
    db.session.commit()
    return _account_view().as_json()


@bp.post("/api/payouts/dashboard")
@seller_required
def api_dashboard() -> ResponseReturnValue:
    return {"url": _dashboard_url()}
