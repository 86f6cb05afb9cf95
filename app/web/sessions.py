"""Ending sessions from the account: change the password, sign out everywhere else.

Both end every session of the account on the server (``app/services/sessions.py``) and log this
one back in, so the person who acted stays signed in and every other device, or copied cookie,
is out. Log-out itself is in ``app/web/auth.py`` and ends every session, this one included.
"""

from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, request
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from flask_wtf.csrf import generate_csrf

from app.db import db, utcnow
from app.errors import ApiError
from app.extensions import limiter
from app.refusals import Refusal
from app.services import sessions
from app.web.auth import TOO_MANY, _start_session  # one way to start a session, shared with log-in
from app.web.forms.auth import ChangePasswordForm
from app.web.forms.trust import DeleteAccountForm
from app.web.privacy import account_page

bp = Blueprint("sessions", __name__)

# The current-password check is a guessing oracle: as slow as the log-in's.
password_limit = limiter.shared_limit(
    "5/minute;20/hour", scope="account-password", methods=["POST"], error_message=TOO_MANY
)
# Form fields of the page for the service's (the JSON API's) field names.
_FORM_FIELDS = {"currentPassword": "current_password", "newPassword": "new_password"}


@bp.post("/account/password")
@login_required
@password_limit
def change_password_form() -> ResponseReturnValue:
    form = ChangePasswordForm()
    if not form.validate_on_submit():
        return account_page(DeleteAccountForm(formdata=None), 422, password_form=form)
    try:
        user = sessions.change_password(
            db.session, current_user.id, form.current_password.data or "", form.new_password.data or "", now=utcnow()
        )
    except Refusal as refusal:
        db.session.rollback()
        for name, message in refusal.fields.items():
            getattr(form, _FORM_FIELDS[name]).errors.append(message)
        return account_page(DeleteAccountForm(formdata=None), 422, password_form=form)
    db.session.commit()
    _start_session(user)
    flash("Your password is changed. Every other session was signed out.", "success")
    return redirect("/account", 303)


@bp.post("/account/sign-out-everywhere")
@login_required
def sign_out_everywhere_form() -> ResponseReturnValue:
    user = sessions.sign_out_everywhere(db.session, current_user.id)
    db.session.commit()
    _start_session(user)
    flash("You are signed out everywhere else.", "success")
    return redirect("/account", 303)


@bp.post("/api/auth/password")
@login_required
@password_limit
def api_change_password() -> ResponseReturnValue:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "Send a JSON object with currentPassword and newPassword.")
    given = {name: body.get(name) for name in ("currentPassword", "newPassword")}
    texts = {name: value for name, value in given.items() if isinstance(value, str) and value}
    if len(texts) < len(given):
        raise ApiError(422, "Some fields are missing.", fields=dict.fromkeys(given.keys() - texts.keys(), "Required."))
    user = sessions.change_password(
        db.session, current_user.id, texts["currentPassword"], texts["newPassword"], now=utcnow()
    )
    db.session.commit()
    _start_session(user)
    return jsonify(passwordChanged=True, csrfToken=generate_csrf())


@bp.post("/api/auth/sign-out-everywhere")
@login_required
def api_sign_out_everywhere() -> ResponseReturnValue:
    user = sessions.sign_out_everywhere(db.session, current_user.id)
    db.session.commit()
    _start_session(user)
    return jsonify(signedOutElsewhere=True, csrfToken=generate_csrf())
