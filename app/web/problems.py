""" "Report a problem with this call" (both parties) and the admin's decision on it.

The party's page is ``/call/<id>/problem?t=<credential>`` (linked from the end screen, the buyer's
status page and the emails); the seller may also use ``/requests/<id>/problem`` with their
session. ``POST /api/calls/<id>/problem`` takes ``{token, reason, details}``, or the seller's
session (and CSRF token) without ``token``, and answers 201 ``{caseId}``.

The admin's actions (refund all or part, or close with a note) are under ``/admin/problems`` and
``/api/admin/problems``, guarded for the whole blueprint like ``app.web.admin``.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from flask import Blueprint, Response, current_app, flash, jsonify, redirect, render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from app.db import db, utcnow
from app.errors import ApiError
from app.extensions import csrf, limiter
from app.formats import currency_exponent, format_money
from app.models import CallRequest, ProblemStatus
from app.refusals import Refusal
from app.services import calls, problems
from app.web.auth import admin_required, signed_in_user_id
from app.web.forms import submit
from app.web.forms.trust import ProblemCloseForm, ProblemForm, ProblemRefundForm
from app.web.security import credential_page

bp = Blueprint("problems", __name__)
admin_bp = Blueprint("admin_problems", __name__)

# The party's endpoints need no login, so they get a budget per IP.
party_limit = limiter.shared_limit("30/minute;300/hour", scope="problem-reports", methods=["POST"])
STATUS_FILTERS = {"open": ProblemStatus.OPEN, "refunded": ProblemStatus.REFUNDED, "closed": ProblemStatus.CLOSED}


# --- The parties -----------------------------------------------------------------------------


@bp.route("/call/<uuid:request_id>/problem", methods=["GET", "POST"])
@party_limit
def party_page(request_id: uuid.UUID) -> ResponseReturnValue:
    token = request.args.get("t", "")
    call, party = problems.call_for_token(db.session, request_id, token, secret_key=_secret_key())
    return _problem_page(call, party, action=f"/call/{request_id}/problem?t={token}")


@bp.route("/requests/<uuid:request_id>/problem", methods=["GET", "POST"])
@login_required
def seller_page(request_id: uuid.UUID) -> ResponseReturnValue:
    call, party = problems.call_for_seller(db.session, request_id, signed_in_user_id())
    return _problem_page(call, party, action=f"/requests/{request_id}/problem")


@bp.post("/api/calls/<uuid:request_id>/problem")
@csrf.exempt  # with a token, the credential is in the body; without, csrf.protect() below
@party_limit
def api_report(request_id: uuid.UUID) -> ResponseReturnValue:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "Send a JSON object.")
    token = body.get("token")
    if isinstance(token, str) and token:
        call, party = problems.call_for_token(db.session, request_id, token, secret_key=_secret_key())
    else:
        if not current_user.is_authenticated:
            raise ApiError(401, "Send your call credential as token, or log in as the seller.", code="unauthorized")
        csrf.protect()
        call, party = problems.call_for_seller(db.session, request_id, signed_in_user_id())
    draft = problems.clean_draft(body.get("reason"), body.get("details"))
    case = problems.open_case(db.session, call, party, draft, now=utcnow())
    db.session.commit()
    return jsonify(caseId=str(case.id)), 201


def _problem_page(call: CallRequest, party: str, *, action: str) -> Response:
    form = ProblemForm()

    def open_case() -> None:
        draft = problems.clean_draft(form.reason.data, form.details.data)
        problems.open_case(db.session, call, party, draft, now=utcnow())

    status, message = submit(form, open_case)
    context = {
        "call": call,
        "party": party,
        "form": form,
        "action": action,
        "message": message,
        "open": calls.problem_window_open(call, utcnow()),
        "reported": problems.has_reported(db.session, call.id, party),
    }
    return credential_page(render_template("call/problem.html", **context), status)


def _secret_key() -> str:
    key: str = current_app.extensions["settings"].secret_key
    return key


# --- The admin -------------------------------------------------------------------------------


@admin_bp.before_request
@admin_required
def admins_only() -> None:
    return None


@admin_bp.post("/admin/problems/<uuid:case_id>/refund")
def refund_form(case_id: uuid.UUID) -> ResponseReturnValue:
    form = ProblemRefundForm()
    row = problems.get_case(db.session, case_id)
    cents = _to_cents(form.amount.data, row.currency) if form.validate_on_submit() else None
    if cents is None:
        flash(" ".join(form.amount.errors) or "Enter the amount to refund, like 12.50.", "error")
        return redirect(f"/admin/disputes#problem-{case_id}", 303)
    try:
        problems.refund_case(
            db.session,
            case_id,
            admin_id=signed_in_user_id(),
            amount_cents=cents,
            note=form.note.data or "",
            now=utcnow(),
        )
    except Refusal as refusal:
        return _refused(case_id, refusal)
    db.session.commit()
    flash(f"Refunded {format_money(cents, row.currency)}; both parties are being emailed.", "success")
    return redirect(f"/admin/disputes#problem-{case_id}", 303)


@admin_bp.post("/admin/problems/<uuid:case_id>/close")
def close_form(case_id: uuid.UUID) -> ResponseReturnValue:
    form = ProblemCloseForm()
    if not form.validate_on_submit():
        flash(" ".join(form.note.errors) or "The form expired. Please try again.", "error")
        return redirect(f"/admin/disputes#problem-{case_id}", 303)
    try:
        problems.close_case(db.session, case_id, admin_id=signed_in_user_id(), note=form.note.data or "", now=utcnow())
    except Refusal as refusal:
        return _refused(case_id, refusal)
    db.session.commit()
    flash("Problem report closed; both parties are being emailed.", "success")
    return redirect(f"/admin/disputes#problem-{case_id}", 303)


@admin_bp.get("/api/admin/problems")
def api_cases() -> ResponseReturnValue:
    chosen = request.args.get("status", "open")
    if chosen not in STATUS_FILTERS:
        raise ApiError(422, f"Use status one of: {', '.join(STATUS_FILTERS)}.", fields={"status": "unknown"})
    rows = problems.list_cases(db.session, STATUS_FILTERS[chosen])
    return jsonify(problems=[problems.serialize_case(row) for row in rows])


@admin_bp.post("/api/admin/problems/<uuid:case_id>/refund")
def api_refund(case_id: uuid.UUID) -> ResponseReturnValue:
    body = _json_body()
    amount = body.get("amountCents")
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ApiError(422, "amountCents must be a whole number of cents.", fields={"amountCents": "Whole cents."})
    note = body.get("note") if isinstance(body.get("note"), str) else ""
    case = problems.refund_case(
        db.session, case_id, admin_id=signed_in_user_id(), amount_cents=amount, note=str(note), now=utcnow()
    )
    db.session.commit()
    return jsonify(problem=_case_json(case.id))


@admin_bp.post("/api/admin/problems/<uuid:case_id>/close")
def api_close(case_id: uuid.UUID) -> ResponseReturnValue:
    note = _json_body().get("note")
    text = note if isinstance(note, str) else ""
    case = problems.close_case(db.session, case_id, admin_id=signed_in_user_id(), note=text, now=utcnow())
    db.session.commit()
    return jsonify(problem=_case_json(case.id))


def _refused(case_id: uuid.UUID, refusal: Refusal) -> ResponseReturnValue:
    db.session.rollback()
    flash(refusal.message, "error")
    return redirect(f"/admin/disputes#problem-{case_id}", 303)


def _case_json(case_id: uuid.UUID) -> dict[str, Any]:
    return problems.serialize_case(problems.get_case(db.session, case_id))


def _to_cents(amount: Decimal | None, currency: str) -> int | None:
    """``Decimal("12.50")`` → ``1250``; None when it has more precision than the currency."""
    if amount is None:
        return None
    cents = amount * (10 ** currency_exponent(currency))
    return int(cents) if cents == cents.to_integral_value() else None


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "Send a JSON object.")
    return body
