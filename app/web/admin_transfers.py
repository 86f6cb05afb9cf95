"""The admin's view of payouts by Stripe Transfer, and of every seller's payout set-up. ADMIN only.

Pages: ``/admin/transfers`` (state, Stripe ids, failures to retry), ``/admin/payout-accounts``.
JSON: ``GET /api/admin/transfers``, ``POST /api/admin/transfers/<payout id>/retry``,
``GET /api/admin/payout-accounts``. The retry is audited with the admin as actor.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from app.db import db, utcnow
from app.errors import ApiError
from app.formats import iso
from app.models import PayoutRequest, TransferState
from app.refusals import Refusal
from app.services import connect, transfers
from app.web.auth import admin_required
from app.web.money import payout_json

bp = Blueprint("admin_transfers", __name__)

STATE_FILTERS: dict[str, TransferState | None] = {
    "all": None,
    "failed": TransferState.FAILED,
    "sending": TransferState.SENDING,
    "sent": TransferState.SENT,
    "reversed": TransferState.REVERSED,
}


@bp.before_request
@admin_required
def admins_only() -> None:
    return None


@bp.after_request
def no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _state_filter() -> tuple[str, TransferState | None]:
    name = (request.args.get("state") or "all").strip().lower()
    if name not in STATE_FILTERS:
        raise ApiError(400, f"state must be one of {', '.join(STATE_FILTERS)}.")
    return name, STATE_FILTERS[name]


def _retry(payout_id: uuid.UUID) -> PayoutRequest:
    return transfers.retry_transfer(db.session, payout_id, admin_id=current_user.id, now=utcnow())


def transfer_json(row: transfers.TransferRow) -> dict[str, Any]:
    transfer = row.transfer
    return {
        "payoutId": str(transfer.payout_request_id),
        "sellerId": str(transfer.seller_id),
        "sellerEmail": row.seller_email,
        "state": transfer.state.value,
        "amountCents": int(transfer.amount_cents),
        "amountReversedCents": int(transfer.amount_reversed_cents),
        "currency": transfer.currency,
        "destination": transfer.destination,
        "stripeTransferId": transfer.stripe_transfer_id,
        "transferGroup": transfer.transfer_group,
        "attempts": transfer.attempts,
        "error": transfer.error,
        "retriedByPayoutId": str(transfer.retried_by_id) if transfer.retried_by_id else None,
        "createdAt": iso(transfer.created_at),
        "sentAt": iso(transfer.sent_at),
        "failedAt": iso(transfer.failed_at),
        "reversedAt": iso(transfer.reversed_at),
    }


# --- Pages -----------------------------------------------------------------------------------


@bp.get("/admin/transfers")
def transfers_page() -> ResponseReturnValue:
    name, state = _state_filter()
    return render_template(
        "admin/transfers.html",
        rows=transfers.list_transfers(db.session, state),
        current_filter=name,
        filters=list(STATE_FILTERS),
    )


@bp.post("/admin/transfers/<uuid:payout_id>/retry")
def retry_form(payout_id: uuid.UUID) -> ResponseReturnValue:
    try:
        retry = _retry(payout_id)
    except Refusal as refusal:
        flash(refusal.message, "error")
        return redirect(url_for("admin_transfers.transfers_page", state="failed"), 303)
    db.session.commit()
    flash(f"Retried as payout {str(retry.id)[:8]}.", "success")
    return redirect(url_for("admin_transfers.transfers_page"), 303)


@bp.get("/admin/payout-accounts")
def payout_accounts_page() -> ResponseReturnValue:
    return render_template("admin/payout_accounts.html", rows=connect.sellers_payout_state(db.session))


# --- JSON API --------------------------------------------------------------------------------


@bp.get("/api/admin/transfers")
def api_transfers() -> ResponseReturnValue:
    _, state = _state_filter()
    return {"transfers": [transfer_json(row) for row in transfers.list_transfers(db.session, state)]}


@bp.post("/api/admin/transfers/<uuid:payout_id>/retry")
def api_retry(payout_id: uuid.UUID) -> ResponseReturnValue:
    retry = _retry(payout_id)
    db.session.commit()
    return {"payout": payout_json(retry)}, 201


@bp.get("/api/admin/payout-accounts")
def api_payout_accounts() -> ResponseReturnValue:
    return {
        "sellers": [
            {"sellerId": str(row.seller_id), "email": row.email, **row.view.as_json()}
            for row in connect.sellers_payout_state(db.session)
        ]
    }
