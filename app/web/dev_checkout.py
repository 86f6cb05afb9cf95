"""The built-in test-mode checkout's page: ``/dev/checkout/<session id>`` with Pay and Cancel.

It exists only while the built-in gateway is in use (no ``STRIPE_SECRET_KEY``) and never in
production. Pay places a hold (or a charge under ``PAYMENT_CAPTURE=immediate``) and has a
worker deliver ``checkout.session.completed`` to the app's own webhook, signed as Stripe signs;
Cancel expires the session (``checkout.session.expired``). Then the buyer is sent where Stripe
would send them: the success or the cancel URL.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, redirect, render_template
from flask.typing import ResponseReturnValue

from app.extensions import redis_client
from app.formats import format_money
from app.integrations.builtin_payments import BuiltinGateway, builtin_gateway
from app.integrations.payments import PaymentError

bp = Blueprint("dev_checkout", __name__, url_prefix="/dev/checkout")


@bp.before_request
def only_with_the_builtin_gateway() -> None:
    settings = current_app.extensions["settings"]
    if settings.is_production or not settings.uses_builtin_stripe:
        abort(404)


def _gateway() -> BuiltinGateway:
    return builtin_gateway(current_app.extensions["settings"], redis_client())


def _session_or_404(session_id: str) -> dict[str, Any]:
    try:
        return _gateway().session(session_id)
    except PaymentError:
        abort(404, description="This test checkout does not exist or has been cleaned up.")


@bp.get("/<session_id>")
def page(session_id: str) -> ResponseReturnValue:
    session = _session_or_404(session_id)
    return render_template(
        "checkout/dev_checkout.html",
        session=session,
        amount=format_money(session["amount_total"], session["currency"]),
    )


@bp.post("/<session_id>/pay")
def pay(session_id: str) -> ResponseReturnValue:
    _session_or_404(session_id)
    try:
        session = _gateway().pay(session_id)
    except PaymentError as error:
        abort(409, description=str(error))
    return redirect(session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"]), 303)


@bp.post("/<session_id>/cancel")
def cancel(session_id: str) -> ResponseReturnValue:
    _session_or_404(session_id)
    session = _gateway().expire(session_id)
    return redirect(session["cancel_url"], 303)
