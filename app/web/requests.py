"""The seller's requests: the ``/requests`` page (works without JavaScript) and the JSON API.

A seller only ever sees and acts on their own requests; anyone else's id answers 404, exactly
like an id that does not exist. Accept and decline are one conditional UPDATE each in the
service; the loser of a race (double click, two tabs, the expiry sweep) gets 409.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from flask import Blueprint, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from app import live
from app.db import db, utcnow
from app.errors import ApiError
from app.formats import format_local, format_money, iso
from app.models import CallRequest, RequestStatus
from app.refusals import Conflict, Invalid
from app.services.availability import load_availability
from app.services.lifecycle.decisions import accept_request, decline_request
from app.services.requests import LIST_LIMIT, accepted_join_url, list_requests, parse_status, serialize_request
from app.services.scheduling import ScheduleConfig, parse_instant
from app.web.forms.requests import DecisionForm
from app.web.live import page_version

bp = Blueprint("requests", __name__)

NO_SCRIPT_REFRESH_SECONDS = 60
FILTERS = ("all", "pending", "accepted", "declined", "cancelled", "completed")
_STATUS_HELP = f"Use one of: {', '.join(FILTERS)}."


@bp.get("/requests")
@login_required
def page() -> ResponseReturnValue:
    chosen = (request.args.get("status") or "all").strip().lower()
    if chosen not in FILTERS:
        chosen = "all"
    version = page_version(live.seller_channel(current_user.id))  # before the data (app/live.py)
    rows = list_requests(db.session, current_user.id, parse_status(chosen))
    zone = load_availability(db.session, current_user.id).time_zone
    return render_template(
        "requests.html",
        zone=zone,
        local_time=format_local,
        iso=iso,
        rows=rows,
        chosen=chosen,
        filters=FILTERS,
        join_urls={row.id: _join_url(row) for row in rows},
        money=format_money,
        limit=LIST_LIMIT,
        pending=RequestStatus.PENDING,
        accepted=RequestStatus.ACCEPTED,
        capture_manual=current_app.extensions["settings"].payment_capture == "manual",
        live_version=version,
        refresh_seconds=NO_SCRIPT_REFRESH_SECONDS,
    )


@bp.post("/requests/<uuid:request_id>/<any(accept, decline):action>")
@login_required
def decide_form(request_id: uuid.UUID, action: str) -> ResponseReturnValue:
    form = DecisionForm()
    back = (form.back.data or "").strip().lower()
    if back == "dashboard":
        target = url_for("dashboard.dashboard")
    else:
        target = url_for("requests.page", status=back) if back in FILTERS[1:] else url_for("requests.page")
    try:
        start_at = parse_instant(form.start_at.data, field="startAt") if form.start_at.data else None
        _decide(action, request_id, start_at, message=form.message.data or "")
    except (Conflict, Invalid) as refusal:
        db.session.rollback()
        flash(refusal.message, "error")
        return redirect(target, code=303)
    if action == "accept" and form.start_at.data:
        flash("Accepted for the time you picked. You and the buyer get a calendar invitation by email.", "success")
    elif action == "accept":
        flash("Accepted. We are charging the buyer and preparing your room; your join link appears here.", "success")
    else:
        flash("Declined. The buyer's payment is released and they have been told.", "success")
    return redirect(target, code=303)


@bp.get("/api/requests")
@login_required
def api_list() -> ResponseReturnValue:
    try:
        status = parse_status(request.args.get("status"))
    except ValueError:
        raise ApiError(422, "Unknown status filter.", fields={"status": _STATUS_HELP}) from None
    rows = list_requests(db.session, current_user.id, status)
    return jsonify(requests=[_serialize(row) for row in rows])


@bp.post("/api/requests/<uuid:request_id>/<any(accept, decline):action>")
@login_required
def api_decide(request_id: uuid.UUID, action: str) -> ResponseReturnValue:
    body = request.get_json(silent=True)
    body = body if isinstance(body, dict) else {}
    raw = body.get("startAt") if action == "accept" else None
    start_at = parse_instant(raw, field="startAt") if raw is not None else None
    message = body.get("message") if action == "decline" else None
    if message is not None and not isinstance(message, str):
        raise ApiError(422, "message must be text.", fields={"message": "Text, up to 500 characters."})
    return jsonify(request=_serialize(_decide(action, request_id, start_at, message=message or "")))


def _decide(action: str, request_id: uuid.UUID, start_at: datetime | None = None, *, message: str = "") -> CallRequest:
    """Run the seller's decision and commit; a refusal is answered by app/errors.py. ``start_at``:
    accept for one of the buyer's proposed times instead of for right now; ``message``: the
    seller's words to the buyer with a decline."""
    settings = current_app.extensions["settings"]
    if action == "accept":
        call_request = accept_request(
            db.session,
            request_id,
            seller_id=current_user.id,
            now=utcnow(),
            join_window_seconds=settings.join_window_seconds,
            start_at=start_at,
            schedule=ScheduleConfig.from_settings(settings),
        )
    else:
        call_request = decline_request(db.session, request_id, seller_id=current_user.id, now=utcnow(), message=message)
    db.session.commit()
    return call_request


def _serialize(call_request: CallRequest) -> dict[str, object]:
    return serialize_request(call_request, join_url=_join_url(call_request))


def _join_url(call_request: CallRequest) -> str | None:
    settings = current_app.extensions["settings"]
    return accepted_join_url(call_request, "seller", app_url=settings.app_url, secret_key=settings.secret_key)
