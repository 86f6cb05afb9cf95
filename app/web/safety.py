"""Safety on the web: the seller's block list, reports from both sides of a call, and the buyer's
rating.

The seller's pages need a login. The buyer has no account: their report and rating pages are
opened with the join credential from their email (``?t=``), checked before anything is shown;
a wrong token is a 404 like an unknown id. The buyer's JSON endpoints carry that token in the
body and are CSRF-exempt for the reason given in ``app.web.calls`` (no cookie authorises them).
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, abort, current_app, flash, jsonify, make_response, redirect, render_template
from flask import request as http_request
from flask.typing import ResponseReturnValue
from flask_login import login_required

from app.config import Settings
from app.db import db, utcnow
from app.errors import ApiError, refusal_status
from app.extensions import csrf, limiter
from app.formats import iso
from app.models import Block, ReporterRole
from app.refusals import Refusal
from app.services import ratings, safety
from app.services.blocks import BlockOutcome, block_buyer_of_request, block_email, list_blocks, unblock
from app.web.auth import safe_next, signed_in_user_id
from app.web.forms import submit
from app.web.forms.trust import BlockForm, EmptyForm, RatingForm, ReportForm

bp = Blueprint("safety", __name__)

# The buyer's endpoints need no login, so they get a budget per IP.
buyer_limit = limiter.shared_limit("30/minute;300/hour", scope="buyer-feedback", methods=["POST"])


def _seller_id() -> uuid.UUID:
    return signed_in_user_id()


def _settings() -> Settings:
    settings: Settings = current_app.extensions["settings"]
    return settings


def _private(html: str, status: int = 200) -> Response:
    response = make_response(html, status)
    # These pages carry a CSRF token and, for buyers, their call credential in the URL.
    response.headers["Cache-Control"] = "no-store"
    return response


# --- The block list ---------------------------------------------------------------------------


@bp.get("/blocks")
@login_required
def blocks_page() -> ResponseReturnValue:
    return _blocks_page(BlockForm(formdata=None))


def _blocks_page(form: BlockForm, status: int = 200) -> Response:
    rows = list_blocks(db.session, _seller_id())
    return _private(render_template("safety/blocks.html", blocks=rows, form=form, button=EmptyForm()), status)


@bp.post("/blocks")
@login_required
def block_post() -> ResponseReturnValue:
    form = BlockForm()
    if not form.validate_on_submit():
        return _blocks_page(form, 422)
    try:
        outcome = block_email(db.session, _seller_id(), form.email.data or "", now=utcnow())
    except Refusal as refusal:
        db.session.rollback()
        form.email.errors = [refusal.message]
        return _blocks_page(form, refusal_status(refusal))
    db.session.commit()
    flash(_blocked_message(outcome), "success")
    return redirect("/blocks", 303)


@bp.post("/blocks/<uuid:block_id>/delete")
@login_required
def unblock_post(block_id: uuid.UUID) -> ResponseReturnValue:
    if not EmptyForm().validate_on_submit():
        abort(400, description="The form expired. Please try again.")
    if unblock(db.session, _seller_id(), block_id):
        db.session.commit()
        flash("Unblocked. They can book you again.", "success")
    else:
        flash("That block was already removed.", "info")
    return redirect("/blocks", 303)


@bp.post("/requests/<uuid:request_id>/block")
@login_required
def block_from_request(request_id: uuid.UUID) -> ResponseReturnValue:
    form = EmptyForm()
    if not form.validate_on_submit():
        abort(400, description="The form expired. Please try again.")
    outcome = block_buyer_of_request(db.session, _seller_id(), request_id, now=utcnow())
    if outcome is None:
        abort(404, description="No such request.")
    db.session.commit()
    flash(_blocked_message(outcome), "success")
    return redirect(safe_next(form.back.data, "/blocks"), 303)


def _blocked_message(outcome: BlockOutcome) -> str:
    message = f"{outcome.block.buyer_email} is blocked: they can no longer book you."
    if not outcome.created:
        message = f"{outcome.block.buyer_email} was already blocked."
    cancelled = len(outcome.cancelled_request_ids)
    if cancelled:
        noun = "request" if cancelled == 1 else "requests"
        message += f" {cancelled} waiting {noun} from them cancelled; their payment is released."
    return message


@bp.get("/api/blocks")
@login_required
def api_blocks() -> ResponseReturnValue:
    return jsonify(blocks=[_block_json(block) for block in list_blocks(db.session, _seller_id())])


@bp.post("/api/blocks")
@login_required
def api_block() -> ResponseReturnValue:
    body = http_request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("email"), str):
        raise ApiError(400, "Send a JSON object with email.")
    outcome = block_email(db.session, _seller_id(), body["email"], now=utcnow())
    db.session.commit()
    return _block_answer(outcome)


@bp.post("/api/requests/<uuid:request_id>/block")
@login_required
def api_block_from_request(request_id: uuid.UUID) -> ResponseReturnValue:
    outcome = block_buyer_of_request(db.session, _seller_id(), request_id, now=utcnow())
    if outcome is None:
        raise ApiError(404, "No such request.")
    db.session.commit()
    return _block_answer(outcome)


@bp.delete("/api/blocks/<uuid:block_id>")
@login_required
def api_unblock(block_id: uuid.UUID) -> ResponseReturnValue:
    if not unblock(db.session, _seller_id(), block_id):
        raise ApiError(404, "No such block.")
    db.session.commit()
    return "", 204


def _block_answer(outcome: BlockOutcome) -> ResponseReturnValue:
    body = {
        "block": _block_json(outcome.block),
        "cancelledRequestIds": [str(request_id) for request_id in outcome.cancelled_request_ids],
    }
    return jsonify(body), 201 if outcome.created else 200


def _block_json(block: Block) -> dict[str, Any]:
    return {"id": str(block.id), "buyerEmail": block.buyer_email, "createdAt": iso(block.created_at)}


# --- Reports ----------------------------------------------------------------------------------


@bp.route("/requests/<uuid:request_id>/report", methods=["GET", "POST"])
@login_required
def seller_report(request_id: uuid.UUID) -> ResponseReturnValue:
    call = safety.sellers_call(db.session, request_id, _seller_id())
    return _report_page(call, ReporterRole.SELLER, action=f"/requests/{request_id}/report")


@bp.route("/report/<uuid:request_id>", methods=["GET", "POST"])
@buyer_limit
def buyer_report(request_id: uuid.UUID) -> ResponseReturnValue:
    token = http_request.args.get("t", "")
    call = safety.buyer_call(db.session, request_id, token, secret_key=_settings().secret_key)
    return _report_page(call, ReporterRole.BUYER, action=f"/report/{request_id}?t={token}")


def _report_page(call: Any, role: ReporterRole, *, action: str) -> Response:
    form = ReportForm()

    def file_report() -> None:
        draft = safety.clean_draft(form.reason.data, form.text.data)
        safety.file_report(db.session, call, role, draft, now=utcnow())

    status, message = submit(form, file_report)
    context = {
        "call": call,
        "role": role.value,
        "form": form,
        "action": action,
        "message": message,
        "reportable": safety.can_report(call),
        "reported": safety.has_reported(db.session, call.id, role),
        "seller_name": safety.seller_name(db.session, call.seller_id),
    }
    return _private(render_template("safety/report.html", **context), status)


@bp.post("/api/requests/<uuid:request_id>/report")
@login_required
def api_seller_report(request_id: uuid.UUID) -> ResponseReturnValue:
    body = _json_body()
    return _api_report(lambda: safety.sellers_call(db.session, request_id, _seller_id()), ReporterRole.SELLER, body)


@bp.post("/api/calls/<uuid:request_id>/report")
@csrf.exempt
@buyer_limit
def api_buyer_report(request_id: uuid.UUID) -> ResponseReturnValue:
    body = _json_body()
    secret_key = _settings().secret_key
    token = str(body.get("token") or "")
    return _api_report(
        lambda: safety.buyer_call(db.session, request_id, token, secret_key=secret_key), ReporterRole.BUYER, body
    )


def _api_report(load: Any, role: ReporterRole, body: dict[str, Any]) -> ResponseReturnValue:
    call = load()
    draft = safety.clean_draft(_text(body, "reason"), _text(body, "text"))
    report = safety.file_report(db.session, call, role, draft, now=utcnow())
    db.session.commit()
    answer = {"id": str(report.id), "status": report.status.value, "reason": report.reason}
    return jsonify(report=answer | {"createdAt": iso(report.created_at)}), 201


# --- Ratings ----------------------------------------------------------------------------------


@bp.route("/rate/<uuid:request_id>", methods=["GET", "POST"])
@buyer_limit
def rate_page(request_id: uuid.UUID) -> ResponseReturnValue:
    token = http_request.args.get("t", "")
    call = safety.buyer_call(db.session, request_id, token, secret_key=_settings().secret_key)
    form = RatingForm()

    def rate() -> None:
        stars = ratings.parse_stars(form.stars.data)
        ratings.rate_call(db.session, call, stars, now=utcnow(), comment=form.comment.data or "")

    status, message = submit(form, rate)
    context = {
        "call": call,
        "form": form,
        "message": message,
        "action": f"/rate/{request_id}?t={token}",
        "rating": ratings.existing_rating(db.session, call.id),
        "seller_name": safety.seller_name(db.session, call.seller_id),
        "report_url": f"/report/{request_id}?t={token}" if safety.can_report(call) else None,
    }
    return _private(render_template("safety/rate.html", **context), status)


@bp.post("/api/calls/<uuid:request_id>/rating")
@csrf.exempt
@buyer_limit
def api_rate(request_id: uuid.UUID) -> ResponseReturnValue:
    body = _json_body()
    call = safety.buyer_call(db.session, request_id, _text(body, "token"), secret_key=_settings().secret_key)
    stars = ratings.parse_stars(body.get("stars"))
    rating = ratings.rate_call(db.session, call, stars, now=utcnow(), comment=_text(body, "comment"))
    db.session.commit()
    return jsonify(rating={"stars": rating.stars, "comment": rating.comment, "createdAt": iso(rating.created_at)}), 201


def _json_body() -> dict[str, Any]:
    body = http_request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "Send a JSON object.")
    return body


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    return value if isinstance(value, str) else ""
