"""Changing the account's email (``app/services/email_change.py``): the Account page's form, the
link from the email, and their JSON twins ``POST /api/auth/email`` and ``/api/auth/email/confirm``.
"""

from __future__ import annotations

from flask import Blueprint, current_app, flash, jsonify, redirect, render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from flask_wtf.csrf import generate_csrf

from app.config import Settings
from app.db import db, utcnow
from app.errors import ApiError, refusal_status
from app.extensions import limiter
from app.refusals import Refusal
from app.services import email_change
from app.web.auth import TOO_MANY, _start_session, user_json  # one way to start a session and show a user
from app.web.forms.auth import ChangeEmailForm
from app.web.forms.trust import DeleteAccountForm
from app.web.privacy import account_page

bp = Blueprint("account_email", __name__)

# The current-password check is a guessing oracle: it shares the password change's budget.
password_limit = limiter.shared_limit(
    "5/minute;20/hour", scope="account-password", methods=["POST"], error_message=TOO_MANY
)
_FORM_FIELDS = {"email": "new_email", "currentPassword": "email_password"}


def _settings() -> Settings:
    settings: Settings = current_app.extensions["settings"]
    return settings


@bp.post("/account/email")
@login_required
@password_limit
def request_form() -> ResponseReturnValue:
    form = ChangeEmailForm()
    if not form.validate_on_submit():
        return account_page(DeleteAccountForm(formdata=None), 422, email_form=form)
    settings = _settings()
    try:
        address = email_change.request_email_change(
            db.session,
            current_user.id,
            form.new_email.data or "",
            form.email_password.data or "",
            now=utcnow(),
            app_url=settings.app_url,
            secret_key=settings.secret_key,
        )
    except Refusal as refusal:
        db.session.rollback()
        for name, message in (refusal.fields or {"email": refusal.message}).items():
            getattr(form, _FORM_FIELDS.get(name, "new_email")).errors.append(message)
        return account_page(DeleteAccountForm(formdata=None), refusal_status(refusal), email_form=form)
    db.session.commit()
    flash(f"We sent a link to {address}. Your email changes when you open it.", "success")
    return redirect("/account", 303)


@bp.get("/account/email/<token>")
def confirm_page(token: str) -> ResponseReturnValue:
    viewer = current_user.id if current_user.is_authenticated else None
    try:
        user = email_change.confirm_email_change(
            db.session, token, secret_key=_settings().secret_key, now=utcnow(), current_user_id=viewer
        )
    except Refusal as refusal:
        db.session.rollback()
        page = render_template("auth/verify_result.html", ok=False, message=refusal.message, change=True)
        return page, refusal_status(refusal)
    db.session.commit()
    if viewer is not None:
        _start_session(user)  # every session ended; the one that confirmed stays in
        flash(f"Your email is now {user.email}. We told your old address.", "success")
        return redirect("/account", 303)
    message = f"Your email is now {user.email}. Log in with it from now on."
    return render_template("auth/verify_result.html", ok=True, message=message, change=True)


@bp.post("/api/auth/email")
@login_required
@password_limit
def api_request() -> ResponseReturnValue:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "Send a JSON object with newEmail and currentPassword.")
    texts = {name: body.get(name) for name in ("newEmail", "currentPassword")}
    missing = {name: "Required." for name, value in texts.items() if not isinstance(value, str) or not value}
    if missing:
        raise ApiError(422, "Some fields are missing.", fields=missing)
    settings = _settings()
    address = email_change.request_email_change(
        db.session,
        current_user.id,
        str(texts["newEmail"]),
        str(texts["currentPassword"]),
        now=utcnow(),
        app_url=settings.app_url,
        secret_key=settings.secret_key,
    )
    db.session.commit()
    return jsonify(pendingEmail=address), 202


@bp.post("/api/auth/email/confirm")
def api_confirm() -> ResponseReturnValue:
    body = request.get_json(silent=True)
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token or len(token) > 1000:
        raise ApiError(422, "Send the token from the link in the email.", fields={"token": "Required."})
    viewer = current_user.id if current_user.is_authenticated else None
    user = email_change.confirm_email_change(
        db.session, token, secret_key=_settings().secret_key, now=utcnow(), current_user_id=viewer
    )
    db.session.commit()
    if viewer is None:
        return jsonify(user=user_json(user))
    _start_session(user)
    return jsonify(user=user_json(user), csrfToken=generate_csrf())
