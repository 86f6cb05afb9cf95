"""A call booked for later, seen by its two parties: the waiting page (``/call/<id>?t=`` before the
room opens), moving the call once, and the buyer's cancellation.

``POST /api/calls/<id>/reschedule`` (``{token, startAt}``), ``POST /api/calls/<id>/reschedule/answer``
(``{token, accept}``) and ``POST /api/calls/<id>/cancel`` (``{token}``, the buyer's) answer
``{"call": {...}}``; the waiting page's forms post the same to ``/call/<id>/...`` and come back.

CSRF: exempt, like the call's own endpoints (``app/web/calls.py``): every endpoint is authorised by
the party's join token in the body, which a cross-site page cannot know; none reads the session.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, flash, jsonify, redirect, render_template, request
from flask.typing import ResponseReturnValue

from app.db import db, utcnow
from app.errors import ApiError
from app.extensions import csrf, limiter
from app.formats import format_when, iso
from app.models import CancelReason
from app.refusals import Forbidden, Refusal
from app.services import calls
from app.services.availability import load_availability, next_window, time_zone_names
from app.services.calls import CallAccess, CallPage
from app.services.lifecycle import schedule
from app.services.scheduling import ScheduleConfig, local_instant, parse_instant
from app.web.security import credential_page

bp = Blueprint("schedule", __name__)
csrf.exempt(bp)
# ``{{ value | iso }}``: times in pages' machine-readable attributes spelled as on the wire (the
# pages' scripts compare them with the API's).
bp.app_template_filter("iso")(iso)

# A person changes a booking a few times at most; a script guessing tokens gets nowhere fast.
change_limit = limiter.shared_limit("20/minute;100/hour", scope="call-schedule", methods=["POST"])


# --- JSON API --------------------------------------------------------------------------------


@bp.post("/api/calls/<request_id>/reschedule")
@change_limit
def api_reschedule(request_id: str) -> ResponseReturnValue:
    access, body = _access(request_id)
    start = parse_instant(body.get("startAt"), field="startAt")
    call = schedule.ask_reschedule(db.session, access.call, access.party, start, config=_config(), now=utcnow())
    db.session.commit()
    return jsonify(call=calls.schedule_state(call))


@bp.post("/api/calls/<request_id>/reschedule/answer")
@change_limit
def api_answer(request_id: str) -> ResponseReturnValue:
    access, body = _access(request_id)
    accept = body.get("accept")
    if not isinstance(accept, bool):
        raise ApiError(422, "accept is true (the new time) or false (keep the agreed time).", fields={"accept": "bool"})
    call = schedule.answer_reschedule(
        db.session, access.call, access.party, accept=accept, config=_config(), now=utcnow()
    )
    db.session.commit()
    return jsonify(call=calls.schedule_state(call))


@bp.post("/api/calls/<request_id>/cancel")
@change_limit
def api_cancel(request_id: str) -> ResponseReturnValue:
    access, _ = _access(request_id)
    _buyer_only(access)
    call = schedule.cancel_by_buyer(db.session, access.call, config=_config(), now=utcnow())
    db.session.commit()
    return jsonify(call=calls.schedule_state(call))


# --- The waiting page and its forms ----------------------------------------------------------


def waiting_room(page: CallPage, token: str) -> Response:
    """``/call/<id>?t=`` while the room of a call booked for later is not open yet."""
    call, party = page.access.call, page.access.party
    assert call.scheduled_start is not None
    availability = load_availability(db.session, call.seller_id)
    zone = (call.buyer_time_zone or "UTC") if party == "buyer" else availability.time_zone
    now = utcnow()
    window = next_window(availability, now) if party == "buyer" and availability.takes_bookings else None
    html = render_template(
        "call/scheduled.html",
        call=call,
        party=party,
        other_name=page.other_name,
        token=token,
        zone=zone,
        zones=time_zone_names(),
        when=lambda value: format_when(value, zone),
        config=_config(),
        now=now,
        next_window=window,
        can_cancel_in_time=now <= call.scheduled_start - _config().cancel_notice,
    )
    return credential_page(html)


@bp.post("/call/<request_id>/reschedule")
@change_limit
def reschedule_form(request_id: str) -> ResponseReturnValue:
    def act(access: CallAccess) -> str:
        zone = request.form.get("time_zone") or "UTC"
        start = local_instant(request.form.get("start_local", ""), zone, field="start_local")
        schedule.ask_reschedule(db.session, access.call, access.party, start, config=_config(), now=utcnow())
        return "We asked the other side to confirm the new time. You will both get an email."

    return _form(request_id, act)


@bp.post("/call/<request_id>/reschedule/answer")
@change_limit
def answer_form(request_id: str) -> ResponseReturnValue:
    def act(access: CallAccess) -> str:
        accept = request.form.get("accept") == "1"
        schedule.answer_reschedule(db.session, access.call, access.party, accept=accept, config=_config(), now=utcnow())
        return "The call is moved: an updated invitation is on its way." if accept else "The agreed time stays."

    return _form(request_id, act)


@bp.post("/call/<request_id>/cancel")
@change_limit
def cancel_form(request_id: str) -> ResponseReturnValue:
    def act(access: CallAccess) -> str:
        _buyer_only(access)
        call = schedule.cancel_by_buyer(db.session, access.call, config=_config(), now=utcnow())
        if call.cancel_reason == CancelReason.BUYER_CANCELLED:
            return "Your call is cancelled and your payment is on its way back to you."
        return "Your call is cancelled. As it was less than the notice before the start, the payment is kept."

    return _form(request_id, act)


# --- Helpers ---------------------------------------------------------------------------------


def _form(request_id: str, act: Any) -> ResponseReturnValue:
    """Run a waiting page's form, flash what happened (or why not) and go back to the page."""
    token = request.form.get("t", "")
    settings = current_app.extensions["settings"]
    access = calls.check_access(db.session, request_id, token, secret_key=settings.secret_key, now=utcnow())
    try:
        message = act(access)
    except Refusal as refusal:
        db.session.rollback()
        flash(refusal.message, "error")
    else:
        db.session.commit()
        flash(message, "success")
    return redirect(f"/call/{access.call.id}?t={token}", 303)


def _access(request_id: str) -> tuple[CallAccess, dict[str, Any]]:
    body = request.get_json(silent=True, force=True)
    if not isinstance(body, dict):
        raise ApiError(400, "Send a JSON object with your token.")
    token = body.get("token")
    if not isinstance(token, str) or not token:
        raise ApiError(422, "token is required.", fields={"token": "Use the link you were sent."})
    settings = current_app.extensions["settings"]
    access = calls.check_access(db.session, request_id, token, secret_key=settings.secret_key, now=utcnow())
    return access, body


def _buyer_only(access: CallAccess) -> None:
    if access.party != "buyer":
        raise Forbidden("buyer_only", "Only the buyer can cancel; a seller who cannot make it proposes another time.")


def _config() -> ScheduleConfig:
    return ScheduleConfig.from_settings(current_app.extensions["settings"])
