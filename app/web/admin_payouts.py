"""The admin's payouts queue (page and JSON) and the whole ledger as CSV. ADMIN only."""

from __future__ import annotations

import uuid
from datetime import datetime

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user

from app.db import db, utcnow
from app.errors import ApiError
from app.models import PayoutRequest, PayoutStatus
from app.refusals import Refusal
from app.services import ledger, payouts
from app.web.auth import admin_required
from app.web.forms.money import ProcessPayoutForm, RejectPayoutForm
from app.web.money import csv_filename, csv_response, date_filters, payout_json

bp = Blueprint("admin_payouts", __name__)

STATUS_FILTERS = {
    "requested": PayoutStatus.REQUESTED,
    "processed": PayoutStatus.PROCESSED,
    "rejected": PayoutStatus.REJECTED,
    "all": None,
}


def _status_filter() -> tuple[str, PayoutStatus | None]:
    name = (request.args.get("status") or "requested").strip().lower()
    if name not in STATUS_FILTERS:
        raise ApiError(400, "status must be one of requested, processed, rejected, all.")
    return name, STATUS_FILTERS[name]


def _admin_id() -> uuid.UUID:
    return current_user.id  # type: ignore[no-any-return]


# --- Pages -----------------------------------------------------------------------------------


@bp.get("/admin/payouts")
@admin_required
def queue_page():  # type: ignore[no-untyped-def]
    name, status = _status_filter()
    return render_template(
        "admin/payouts.html",
        rows=payouts.payout_queue(db.session, status),
        current_filter=name,
        filters=list(STATUS_FILTERS),
        process_form=ProcessPayoutForm(formdata=None),
        reject_form=RejectPayoutForm(formdata=None),
    )


@bp.post("/admin/payouts/<uuid:payout_id>/process")
@admin_required
def process_form(payout_id: uuid.UUID):  # type: ignore[no-untyped-def]
    form = ProcessPayoutForm()
    if form.validate_on_submit():
        _decide_from_page(payout_id, "process", form.reference.data or "")
    else:
        _flash_errors(form.errors)
    return redirect(url_for("admin_payouts.queue_page"), 303)


@bp.post("/admin/payouts/<uuid:payout_id>/reject")
@admin_required
def reject_form(payout_id: uuid.UUID):  # type: ignore[no-untyped-def]
    form = RejectPayoutForm()
    if form.validate_on_submit():
        _decide_from_page(payout_id, "reject", form.reason.data or "")
    else:
        _flash_errors(form.errors)
    return redirect(url_for("admin_payouts.queue_page"), 303)


def _decide_from_page(payout_id: uuid.UUID, action: str, text: str) -> None:
    try:
        payout = _decide(payout_id, action, text, now=utcnow())
    except Refusal as refusal:
        flash(refusal.message, "error")
        return
    db.session.commit()
    done = "marked processed" if payout.status == PayoutStatus.PROCESSED else "rejected; the amount is back"
    flash(f"Payout {str(payout.id)[:8]} {done}. The seller was emailed.", "success")


def _flash_errors(errors: dict[str, list[str]]) -> None:
    for messages in errors.values():
        for message in messages:
            flash(str(message), "error")


@bp.get("/admin/ledger.csv")
@admin_required
def ledger_csv():  # type: ignore[no-untyped-def]
    start, end = date_filters()
    rows = ledger.csv_rows(db.session, start=start, end=end)
    return csv_response(rows, csv_filename("chatlink-ledger-all", start, end))


# --- JSON API --------------------------------------------------------------------------------


@bp.get("/api/admin/payouts")
@admin_required
def api_queue():  # type: ignore[no-untyped-def]
    _, status = _status_filter()
    rows = payouts.payout_queue(db.session, status)
    return {
        "payouts": [
            {**payout_json(row.payout), "sellerId": str(row.payout.seller_id), "sellerEmail": row.seller_email}
            for row in rows
        ]
    }


@bp.post("/api/admin/payouts/<uuid:payout_id>/process")
@admin_required
def api_process(payout_id: uuid.UUID):  # type: ignore[no-untyped-def]
    """``{"action": "process", "reference": "..."}`` or ``{"action": "reject", "reason": "..."}``."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, 'Send a JSON object like {"action": "process", "reference": "..."}.')
    action = body.get("action", "process")
    if action not in ("process", "reject"):
        raise ApiError(422, "action must be 'process' or 'reject'.", fields={"action": "process or reject"})
    text = body.get("reference" if action == "process" else "reason")
    text = text if isinstance(text, str) else ""
    payout = _decide(payout_id, action, text, now=utcnow())
    db.session.commit()
    return {"payout": payout_json(payout)}


def _decide(payout_id: uuid.UUID, action: str, text: str, *, now: datetime) -> PayoutRequest:
    if action == "process":
        return payouts.process_payout(db.session, payout_id, admin_id=_admin_id(), reference=text, now=now)
    return payouts.reject_payout(db.session, payout_id, admin_id=_admin_id(), reason=text, now=now)
