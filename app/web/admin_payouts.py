"""The admin's payouts queue (page and JSON) and the whole ledger as CSV. ADMIN only."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from app.db import db, utcnow
from app.errors import ApiError
from app.models import PayoutRequest, PayoutStatus, PayoutTransfer
from app.refusals import Refusal
from app.services import ledger, payout_methods, payouts, transfers
from app.web.auth import admin_required, signed_in_user_id
from app.web.forms.money import ProcessPayoutForm, RejectPayoutForm
from app.web.money import csv_filename, csv_response, date_filters, payout_json

bp = Blueprint("admin_payouts", __name__)

STATUS_FILTERS = {
    "requested": PayoutStatus.REQUESTED,
    "processed": PayoutStatus.PROCESSED,
    "rejected": PayoutStatus.REJECTED,
    "failed": PayoutStatus.FAILED,
    "reversed": PayoutStatus.REVERSED,
    "all": None,
}


def _status_filter() -> tuple[str, PayoutStatus | None]:
    name = (request.args.get("status") or "requested").strip().lower()
    if name not in STATUS_FILTERS:
        raise ApiError(400, f"status must be one of {', '.join(STATUS_FILTERS)}.")
    return name, STATUS_FILTERS[name]


def _admin_id() -> uuid.UUID:
    return signed_in_user_id()


# --- Pages -----------------------------------------------------------------------------------


@bp.get("/admin/payouts")
@admin_required
def queue_page() -> ResponseReturnValue:
    name, status = _status_filter()
    rows = payouts.payout_queue(db.session, status)
    return render_template(
        "admin/payouts.html",
        rows=rows,
        **_destinations(rows),
        current_filter=name,
        filters=list(STATUS_FILTERS),
        process_form=ProcessPayoutForm(formdata=None),
        reject_form=RejectPayoutForm(formdata=None),
    )


@bp.post("/admin/payouts/<uuid:payout_id>/process")
@admin_required
def process_form(payout_id: uuid.UUID) -> ResponseReturnValue:
    form = ProcessPayoutForm()
    if form.validate_on_submit():
        _decide_from_page(payout_id, "process", form.reference.data or "")
    else:
        _flash_errors(form.errors)
    return redirect(url_for("admin_payouts.queue_page"), 303)


@bp.post("/admin/payouts/<uuid:payout_id>/reject")
@admin_required
def reject_form(payout_id: uuid.UUID) -> ResponseReturnValue:
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


def _flash_errors(errors: Mapping[str, Any]) -> None:
    for messages in errors.values():
        for message in messages:
            flash(str(message), "error")


@bp.get("/admin/ledger.csv")
@admin_required
def ledger_csv() -> ResponseReturnValue:
    start, end = date_filters()
    rows = ledger.csv_rows(db.session, start=start, end=end)
    return csv_response(rows, csv_filename("chatlink-ledger-all", start, end))


# --- JSON API --------------------------------------------------------------------------------


@bp.get("/api/admin/payouts")
@admin_required
def api_queue() -> ResponseReturnValue:
    _, status = _status_filter()
    rows = payouts.payout_queue(db.session, status)
    found = _destinations(rows)
    return {
        "payouts": [
            {
                **payout_json(row.payout),
                "sellerId": str(row.payout.seller_id),
                "sellerEmail": row.seller_email,
                **_destination_json(row.payout.id, **found),
            }
            for row in rows
        ]
    }


def _destinations(rows: list[payouts.QueuedPayout]) -> dict[str, Any]:
    """Where each payout goes: its Stripe transfer, or the seller's manual method (in full only
    on the payouts still waiting for an admin)."""
    listed = [row.payout for row in rows]
    secret_key = current_app.extensions["settings"].secret_key
    return {
        "destinations": payout_methods.admin_destinations(db.session, listed, secret_key=secret_key),
        "transfers": transfers.transfers_by_payout(db.session, [payout.id for payout in listed]),
    }


def _destination_json(
    payout_id: uuid.UUID,
    *,
    destinations: dict[uuid.UUID, payout_methods.Destination],
    transfers: dict[uuid.UUID, PayoutTransfer],
) -> dict[str, Any]:
    transfer = transfers.get(payout_id)
    if transfer is not None:
        return {
            "paidBy": "transfer",
            "transferState": transfer.state.value,
            "stripeTransferId": transfer.stripe_transfer_id,
        }
    destination = destinations.get(payout_id)
    method = destination.method if destination else None
    return {
        "paidBy": "manual",
        "method": method.as_json() if method else None,
        "methodFull": destination.full_value if destination else None,
    }


@bp.post("/api/admin/payouts/<uuid:payout_id>/process")
@admin_required
def api_process(payout_id: uuid.UUID) -> ResponseReturnValue:
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
