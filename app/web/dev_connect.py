"""The built-in Stripe Connect's pages: ``/dev/connect/<account>`` ("test mode").

It exists only while the built-in twin is in use (no ``STRIPE_SECRET_KEY``) and never in
production. An Account Link opens the onboarding view: the seller completes onboarding or leaves
requirements due, and is sent back to the return URL as Stripe would; the app learns the outcome
from the ``account.updated`` webhook the twin sends. A login link opens the dashboard view: the
account's transfers, which can be reversed, and a switch that makes the next transfer fail.

Links are single-use, as Stripe's are: an unknown or used link sends the seller to the refresh URL
(the app then makes a new link). The page's buttons carry a token the link handed out.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, redirect, render_template, request
from flask.typing import ResponseReturnValue

from app.extensions import redis_client
from app.formats import format_money
from app.integrations.builtin_connect import BuiltinConnect, builtin_connect
from app.integrations.payments import PaymentError

bp = Blueprint("dev_connect", __name__, url_prefix="/dev/connect")


@bp.before_request
def only_with_the_builtin_twin() -> None:
    settings = current_app.extensions["settings"]
    if settings.is_production or not settings.uses_builtin_stripe:
        abort(404)


def _twin() -> BuiltinConnect:
    return builtin_connect(current_app.extensions["settings"], redis_client())


def _account_or_404(account_id: str) -> dict[str, Any]:
    try:
        return _twin().account(account_id)
    except PaymentError:
        abort(404, description="This test-mode account does not exist or has been cleaned up.")


def _page_kind(account_id: str) -> str:
    kind = _twin().page_kind(account_id, request.form.get("page", ""))
    if kind is None:
        abort(403, description="This test-mode page has expired. Open it again from ChatLink.")
    return kind


@bp.get("/<account_id>")
def page(account_id: str) -> ResponseReturnValue:
    account = _account_or_404(account_id)
    twin = _twin()
    kind = twin.open_link(account_id, request.args.get("link", ""))
    if kind is None:
        return redirect(account["refresh_url"] or current_app.extensions["settings"].app_url, 303)
    return render_template(
        "dev/connect.html",
        account=account,
        kind=kind,
        page_token=twin.page_session(account_id, kind),
        transfers=twin.transfers(account_id) if kind == "login" else [],
        format_money=format_money,
    )


@bp.post("/<account_id>/complete")
def complete(account_id: str) -> ResponseReturnValue:
    account = _account_or_404(account_id)
    _page_kind(account_id)
    _twin().complete_onboarding(account_id)
    return redirect(account["return_url"], 303)


@bp.post("/<account_id>/leave-due")
def leave_due(account_id: str) -> ResponseReturnValue:
    account = _account_or_404(account_id)
    _page_kind(account_id)
    _twin().leave_requirements_due(account_id)
    return redirect(account["return_url"], 303)


@bp.post("/<account_id>/fail-next-transfer")
def fail_next_transfer(account_id: str) -> ResponseReturnValue:
    _account_or_404(account_id)
    _page_kind(account_id)
    _twin().fail_next_transfer(account_id, request.form.get("fail") == "1")
    return _back_to_dashboard(account_id)


@bp.post("/<account_id>/transfers/<transfer_id>/reverse")
def reverse(account_id: str, transfer_id: str) -> ResponseReturnValue:
    _account_or_404(account_id)
    _page_kind(account_id)
    twin = _twin()
    if not any(transfer["id"] == transfer_id for transfer in twin.transfers(account_id)):
        abort(404)
    twin.reverse_transfer(transfer_id)
    return _back_to_dashboard(account_id)


def _back_to_dashboard(account_id: str) -> ResponseReturnValue:
    # A login link is single-use too: hand out a fresh one, as the Express dashboard keeps its session.
    return redirect(_twin().create_login_link(account_id), 303)
