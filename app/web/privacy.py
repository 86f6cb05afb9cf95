"""The seller's own data: ``/account`` (download it, delete the account) and the JSON twins.

Deletion asks for the password again, so a session left open on a shared computer cannot
erase the account; it ends every session (``session_version`` is bumped) and this one at once.
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app, flash, jsonify, make_response, redirect, render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required, logout_user

from app.db import db, utcnow
from app.errors import ApiError, refusal_status
from app.extensions import limiter
from app.refusals import Refusal
from app.services import privacy
from app.web.forms.auth import ChangeEmailForm, ChangePasswordForm
from app.web.forms.trust import DeleteAccountForm

bp = Blueprint("privacy", __name__)

# The password check is a guessing oracle: keep it as slow as the log-in's.
delete_limit = limiter.shared_limit("5/minute;20/hour", scope="account-delete", methods=["POST"])


@bp.after_request
def no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/account")
@login_required
def account() -> ResponseReturnValue:
    return account_page(DeleteAccountForm(formdata=None))


def account_page(
    form: DeleteAccountForm,
    status: int = 200,
    *,
    password_form: ChangePasswordForm | None = None,
    email_form: ChangeEmailForm | None = None,
) -> Response:
    """The account page; ``app.web.sessions`` and ``app.web.account_email`` render it again with
    their form's errors."""
    html = render_template(
        "account.html",
        form=form,
        user=current_user,
        password_form=password_form or ChangePasswordForm(formdata=None),
        email_form=email_form or ChangeEmailForm(formdata=None),
    )
    return make_response(html, status)


@bp.get("/account/export.json")
@login_required
def export() -> ResponseReturnValue:
    data = privacy.export_seller_data(db.session, current_user.id, now=utcnow())
    response = make_response(json.dumps(data, indent=2, ensure_ascii=False))
    response.mimetype = "application/json"
    stamp = utcnow().strftime("%Y%m%d")
    response.headers["Content-Disposition"] = f'attachment; filename="chatlink-data-{stamp}.json"'
    return response


@bp.post("/account/delete")
@login_required
@delete_limit
def delete_form() -> ResponseReturnValue:
    form = DeleteAccountForm()
    if not form.validate_on_submit():
        return account_page(form, 422)
    try:
        _delete(form.password.data or "")
    except Refusal as refusal:
        db.session.rollback()
        form.password.errors = [refusal.message]
        return account_page(form, refusal_status(refusal))
    flash("Your account has been deleted. We sent a confirmation to your email address.", "success")
    return redirect("/", 303)


@bp.post("/api/account/delete")
@login_required
@delete_limit
def api_delete() -> ResponseReturnValue:
    body = request.get_json(silent=True)
    password = body.get("password") if isinstance(body, dict) else None
    if not isinstance(password, str) or not password:
        raise ApiError(422, "Enter your password to confirm.", fields={"password": "required"})
    _delete(password)
    return jsonify(deleted=True)


def _delete(password: str) -> None:
    user_id = current_user.id
    privacy.delete_account(db.session, user_id, password=password, now=utcnow())
    db.session.commit()
    logout_user()
    current_app.logger.info("account deleted", extra={"user_id": str(user_id)})
