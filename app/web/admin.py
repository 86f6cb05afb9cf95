"""The admin area: ``/admin`` and ``/api/admin/...`` (payouts live in helper "ledger"'s blueprint).

The guard is on the blueprint, not on each view, so no page or endpoint added here can forget it:
anonymous visitors are sent to log in (401 on the API) and sellers get 403. Every action is one
service call, audited with the admin as actor, then committed.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, current_app, flash, jsonify, make_response, redirect, render_template, request
from flask.typing import ResponseReturnValue

from app.db import db, utcnow
from app.errors import ApiError, refusal_status
from app.formats import format_money
from app.models import ProblemStatus, ReportStatus
from app.refusals import Refusal
from app.services import admin, privacy, problems, safety
from app.services.settlement_text import duration_text
from app.web.auth import admin_required, signed_in_user_id
from app.web.forms.trust import EmptyForm, EraseForm, ProblemCloseForm, ProblemRefundForm, ResolveForm, SuspendForm

bp = Blueprint("admin", __name__)

REPORT_FILTERS = {"open": ReportStatus.OPEN, "resolved": ReportStatus.RESOLVED, "all": None}


@bp.before_request
@admin_required
def admins_only() -> None:
    """Runs before every view of this blueprint; ``admin_required`` answers for anyone else."""
    return None


@bp.after_request
def no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _admin_id() -> uuid.UUID:
    return signed_in_user_id()


def _page(template: str, status: int = 200, **context: Any) -> Response:
    return make_response(render_template(template, money=format_money, **context), status)


@bp.get("/admin")
def index() -> ResponseReturnValue:
    return _page("admin/index.html", counts=admin.admin_counts(db.session))


# --- Reports ----------------------------------------------------------------------------------


@bp.get("/admin/reports")
def reports() -> ResponseReturnValue:
    chosen = request.args.get("status", "open")
    if chosen not in REPORT_FILTERS:
        chosen = "open"
    rows = safety.list_reports(db.session, REPORT_FILTERS[chosen])
    return _page("admin/reports.html", rows=rows, chosen=chosen, filters=list(REPORT_FILTERS), form=ResolveForm())


@bp.post("/admin/reports/<uuid:report_id>/resolve")
def resolve_report_form(report_id: uuid.UUID) -> ResponseReturnValue:
    form = ResolveForm()
    if not form.validate_on_submit():
        flash(" ".join(form.note.errors) or "The form expired. Please try again.", "error")
        return redirect("/admin/reports", 303)
    try:
        safety.resolve_report(db.session, report_id, admin_id=_admin_id(), note=form.note.data or "", now=utcnow())
    except Refusal as refusal:
        db.session.rollback()
        flash(refusal.message, "error")
    else:
        db.session.commit()
        flash("Report resolved.", "success")
    return redirect("/admin/reports", 303)


@bp.get("/api/admin/reports")
def api_reports() -> ResponseReturnValue:
    chosen = request.args.get("status", "open")
    if chosen not in REPORT_FILTERS:
        raise ApiError(422, f"Use status one of: {', '.join(REPORT_FILTERS)}.", fields={"status": "unknown"})
    rows = safety.list_reports(db.session, REPORT_FILTERS[chosen])
    return jsonify(reports=[safety.serialize_report(row.report) for row in rows])


@bp.post("/api/admin/reports/<uuid:report_id>/resolve")
def api_resolve_report(report_id: uuid.UUID) -> ResponseReturnValue:
    body = _json_body()
    note = body.get("note")
    if not isinstance(note, str):
        raise ApiError(422, "Write a short note on what was done.", fields={"note": "required"})
    report = safety.resolve_report(db.session, report_id, admin_id=_admin_id(), note=note, now=utcnow())
    db.session.commit()
    return jsonify(report=safety.serialize_report(report))


# --- Sellers ----------------------------------------------------------------------------------


@bp.get("/admin/sellers")
def sellers() -> ResponseReturnValue:
    query = request.args.get("q", "")[:100]
    rows = admin.list_sellers(db.session, query)
    return _page("admin/sellers.html", rows=rows, q=query, suspend_form=SuspendForm(), button=EmptyForm())


@bp.post("/admin/sellers/<uuid:seller_id>/<any(suspend, unsuspend):action>")
def seller_action_form(seller_id: uuid.UUID, action: str) -> ResponseReturnValue:
    form = SuspendForm()
    if not form.validate_on_submit():
        flash("The form expired. Please try again.", "error")
        return redirect("/admin/sellers", 303)
    try:
        message = _seller_action(seller_id, action, form.note.data or "")
    except Refusal as refusal:
        db.session.rollback()
        flash(refusal.message, "error")
    else:
        db.session.commit()
        flash(message, "success")
    return redirect("/admin/sellers", 303)


@bp.post("/api/admin/sellers/<uuid:seller_id>/<any(suspend, unsuspend):action>")
def api_seller_action(seller_id: uuid.UUID, action: str) -> ResponseReturnValue:
    body = request.get_json(silent=True) or {}
    note = body.get("note") if isinstance(body, dict) else None
    _seller_action(seller_id, action, note if isinstance(note, str) else "")
    db.session.commit()
    return jsonify(seller={"id": str(seller_id), "suspended": action == "suspend"})


def _seller_action(seller_id: uuid.UUID, action: str, note: str) -> str:
    if action == "suspend":
        declined = admin.suspend_seller(db.session, seller_id, admin_id=_admin_id(), note=note, now=utcnow())
        return f"Seller suspended; {len(declined)} pending request(s) declined and their holds released."
    admin.unsuspend_seller(db.session, seller_id, admin_id=_admin_id(), now=utcnow())
    return "Seller reinstated: their paywall takes bookings again."


# --- Disputes, events, summary ----------------------------------------------------------------


@bp.get("/admin/disputes")
def disputes() -> ResponseReturnValue:
    """Payment disputes, and the parties' problem reports (open first; the admin's actions on them
    are in ``app.web.problems``)."""
    return _page(
        "admin/disputes.html",
        rows=admin.list_disputes(db.session),
        open_cases=problems.list_cases(db.session, ProblemStatus.OPEN),
        done_cases=[row for row in problems.list_cases(db.session, None) if row.case.status != ProblemStatus.OPEN],
        refund_form=ProblemRefundForm(formdata=None),
        close_form=ProblemCloseForm(formdata=None),
        duration=duration_text,
    )


@bp.get("/admin/events")
def events() -> ResponseReturnValue:
    event_type = request.args.get("type", "")[:60]
    ref = request.args.get("ref", "")[:255]
    rows = admin.query_events(db.session, type=event_type, ref=ref)
    return _page("admin/events.html", rows=rows, type=event_type, ref=ref, limit=admin.LIST_LIMIT)


@bp.get("/admin/summary")
def summary() -> ResponseReturnValue:
    days = request.args.get("days", "30")
    # ASCII digits only: "²".isdigit() is true but int("²") fails; and a huge number is clamped
    # before it reaches the date arithmetic.
    days_count = int(days) if days.isascii() and days.isdigit() and len(days) <= 4 else 30
    days_count = min(max(days_count, 1), admin.SUMMARY_DAYS_MAX)
    rows = admin.daily_summary(db.session, now=utcnow(), days=days_count)
    return _page(
        "admin/summary.html",
        rows=rows,
        totals=admin.summary_totals(rows),
        days=days_count,
        currency=current_app.extensions["settings"].currency,
    )


# --- Buyer erasure ----------------------------------------------------------------------------


@bp.get("/admin/erase")
def erase_page() -> ResponseReturnValue:
    return _page("admin/erase.html", form=EraseForm(formdata=None), result=None)


@bp.post("/admin/erase")
def erase_form() -> ResponseReturnValue:
    form = EraseForm()
    if not form.validate_on_submit():
        return _page("admin/erase.html", 422, form=form, result=None)
    try:
        result = privacy.erase_buyer_email(db.session, form.email.data or "", admin_id=_admin_id(), now=utcnow())
    except Refusal as refusal:
        db.session.rollback()
        form.email.errors = [refusal.message]
        return _page("admin/erase.html", refusal_status(refusal), form=form, result=None)
    db.session.commit()
    return _page("admin/erase.html", form=EraseForm(formdata=None), result=result)


@bp.post("/api/admin/erase")
def api_erase() -> ResponseReturnValue:
    body = _json_body()
    email = body.get("email")
    result = privacy.erase_buyer_email(
        db.session, email if isinstance(email, str) else "", admin_id=_admin_id(), now=utcnow()
    )
    db.session.commit()
    return jsonify(erasure={"tombstone": result.tombstone, "rows": result.rows})


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "Send a JSON object.")
    return body
