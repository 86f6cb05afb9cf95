"""The seller's money: balance (page and JSON), payout requests (form and JSON), ledger CSV.

``templates/money/_balance_card.html`` is a self-contained card (balance, payout form, links)
meant for the dashboard's ``#balance`` section: a view that includes it passes
``**balance_card_context(user)``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import date
from decimal import Decimal
from typing import Any

from flask import Blueprint, Response, current_app, flash, redirect, render_template, request, stream_with_context
from flask.typing import ResponseReturnValue
from flask_login import login_required

from app.db import db, utcnow
from app.errors import ApiError
from app.formats import currency_exponent, format_money, iso
from app.models import LedgerKind, PayoutRequest, User
from app.refusals import Refusal
from app.services import connect, ledger, payouts
from app.web.auth import safe_next, signed_in_user
from app.web.forms.money import PayoutRequestForm

bp = Blueprint("money", __name__)

KIND_LABELS = {
    LedgerKind.EARNING: "Earning",
    LedgerKind.PAYOUT: "Payout",
    LedgerKind.REVERSAL: "Reversal",
}


# --- Shared helpers (also used by the admin blueprint) ---------------------------------------


@bp.app_template_filter("signed_money")
def signed_money(cents: int, currency: str) -> str:
    """``-1500, "usd"`` → ``\u2212$15.00`` (a true minus sign); ``800`` → ``+$8.00``."""
    return format_money(int(cents), currency, signed=True)


@bp.app_template_filter("money")
def money(cents: int, currency: str) -> str:
    return format_money(int(cents), currency)


@bp.app_template_filter("major_units")
def major_units(cents: int, currency: str) -> str:
    """``2550, "usd"`` → ``"25.50"``: a plain number for an ``<input type=number>``."""
    exponent = currency_exponent(currency)
    if exponent == 0:
        return str(int(cents))
    whole, part = divmod(abs(int(cents)), 10**exponent)
    return f"{'-' if cents < 0 else ''}{whole}.{part:0{exponent}d}"


def payout_json(payout: PayoutRequest) -> dict[str, Any]:
    return {
        "id": str(payout.id),
        "status": payout.status.value,
        "amountCents": int(payout.amount_cents),
        "currency": payout.currency,
        "reference": payout.reference,
        "rejectReason": payout.reject_reason,
        "createdAt": iso(payout.created_at),
        "processedAt": iso(payout.processed_at),
    }


def parse_day(name: str) -> date | None:
    """A ``YYYY-MM-DD`` query parameter, or None when absent; anything else is a 400."""
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw) if len(raw) == 10 else _bad_day(name)
    except ValueError:
        return _bad_day(name)


def _bad_day(name: str) -> date:
    raise ApiError(400, f"'{name}' must be a date like 2026-01-31.", fields={name: "Use YYYY-MM-DD."})


def date_filters() -> tuple[date | None, date | None]:
    start, end = parse_day("from"), parse_day("to")
    if start and end and start > end:
        raise ApiError(400, "'from' must not be after 'to'.", fields={"from": "Must not be after 'to'."})
    return start, end


def csv_response(rows: Iterable[list[object]], filename: str) -> Response:
    """Stream ``rows`` as a CSV download, one line at a time."""

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        for row in rows:
            writer.writerow(row)
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()

    response = Response(stream_with_context(lines()), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


def csv_filename(prefix: str, start: date | None, end: date | None) -> str:
    span = "-".join(day.isoformat() for day in (start, end) if day) or utcnow().date().isoformat()
    return f"{prefix}-{span}.csv"


def balance_card_context(user: User) -> dict[str, Any]:
    """What ``money/_balance_card.html`` needs, for any page that includes it."""
    currency = _currency(user)
    return {
        "balance": ledger.get_balance(db.session, user.id, currency=currency),
        "payout_form": PayoutRequestForm(formdata=None),
        "min_payout_cents": payouts.MIN_PAYOUT_CENTS,
        "amount_step": _amount_step(currency),
        "payout_view": connect.payout_account(
            db.session, user.id, connect_countries=current_app.extensions["settings"].connect_countries
        ),
    }


def _user() -> User:
    return signed_in_user()


def _currency(user: User) -> str:
    return ledger.seller_currency(db.session, user.id, default=current_app.extensions["settings"].currency)


def _amount_step(currency: str) -> str:
    exponent = currency_exponent(currency)
    return "1" if exponent == 0 else f"0.{'0' * (exponent - 1)}1"


def _request_payout(user: User, amount_cents: int) -> PayoutRequest:
    return payouts.request_payout(db.session, user.id, amount_cents, currency=_currency(user), now=utcnow())


# --- Pages -----------------------------------------------------------------------------------


@bp.get("/balance")
@login_required
def balance_page() -> ResponseReturnValue:
    user = _user()
    return render_template(
        "money/balance.html",
        entries=ledger.recent_entries(db.session, user.id),
        payouts=payouts.seller_payouts(db.session, user.id, limit=20),
        kind_labels=KIND_LABELS,
        **balance_card_context(user),
    )


@bp.post("/payouts/request")
@login_required
def request_payout_form() -> ResponseReturnValue:
    form = PayoutRequestForm()
    back = safe_next(form.next.data, "/balance")
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for message in errors:
                flash(str(message), "error")
        return redirect(back, 303)
    user = _user()
    cents = _to_cents(form.amount.data, _currency(user))
    if cents is None:
        flash("Use at most two decimal places.", "error")
        return redirect(back, 303)
    try:
        payout = _request_payout(user, cents)
    except Refusal as refusal:
        flash(refusal.message, "error")
        return redirect(back, 303)
    db.session.commit()
    flash(f"Payout of {format_money(int(payout.amount_cents), payout.currency)} requested.", "success")
    return redirect(back, 303)


def _to_cents(amount: Decimal | None, currency: str) -> int | None:
    """``Decimal("25.50")`` → ``2550``; None when the amount has more precision than the currency."""
    if amount is None:
        return None
    cents = amount * (10 ** currency_exponent(currency))
    return int(cents) if cents == cents.to_integral_value() else None


@bp.get("/ledger.csv")
@login_required
def ledger_csv() -> ResponseReturnValue:
    start, end = date_filters()
    rows = ledger.csv_rows(db.session, seller_id=_user().id, start=start, end=end)
    return csv_response(rows, csv_filename("chatlink-ledger", start, end))


# --- JSON API --------------------------------------------------------------------------------


@bp.get("/api/balance")
@login_required
def api_balance() -> ResponseReturnValue:
    user = _user()
    return ledger.get_balance(db.session, user.id, currency=_currency(user)).as_json()


@bp.get("/api/payouts")
@login_required
def api_payouts() -> ResponseReturnValue:
    return {"payouts": [payout_json(p) for p in payouts.seller_payouts(db.session, _user().id)]}


@bp.post("/api/payouts/request")
@login_required
def api_request_payout() -> ResponseReturnValue:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, 'Send a JSON object like {"amountCents": 2500}.')
    amount = body.get("amountCents")
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ApiError(422, "amountCents must be a whole number of cents.", fields={"amountCents": "Whole cents."})
    payout = _request_payout(_user(), amount)
    db.session.commit()
    return {"payout": payout_json(payout)}, 201
