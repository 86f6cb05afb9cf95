"""The call page and the video API its script uses.

``/call/<id>?t=<token>`` is the room. ``POST /api/video/create|join|presence|end`` and the
signaling endpoints take ``{requestId, token, ...}``, where ``token`` is the party's join
credential (the page's ``t``).

CSRF: this blueprint is exempt on purpose. None of its endpoints reads the session cookie: each
is authorised by the join token in the JSON body, which a cross-site page cannot know, so there
is no ambient credential for a CSRF token to protect (and the ``pagehide`` beacon that reports
"left" cannot send a custom header).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, jsonify, make_response, render_template, request

from app.db import db, utcnow
from app.errors import ApiError
from app.extensions import csrf, redis_client
from app.integrations.video import VideoProvider, video_provider
from app.refusals import Conflict
from app.services import call_endings, call_presence, calls, ratings
from app.services.calls import AccessDenied, CallAccess, CallConfig
from app.services.signaling import CLIENT_ID, PresenceSlots, Signaling, validate_message
from app.web.schedule import waiting_room
from app.web.security import credential_page

bp = Blueprint("calls", __name__)
csrf.exempt(bp)

PRESENCE_STATES = ("joined", "connected", "left")
DAILY_FEATURES = ("camera", "microphone", "display-capture", "fullscreen", "autoplay")


@bp.get("/call/<request_id>")
def call_page(request_id: str) -> Response:
    settings = current_app.extensions["settings"]
    try:
        page = calls.open_call_page(
            db.session, request_id, request.args.get("t", ""), secret_key=settings.secret_key, now=utcnow()
        )
    except AccessDenied as denied:
        return credential_page(render_template("call/denied.html", message=denied.message), 403)
    access = page.access
    if access.ended:
        state = calls.call_state(access.call, utcnow(), party=access.party)
        problem = f"/call/{access.call.id}/problem?t={request.args['t']}" if state.get("problemReportOpen") else None
        rating = ratings.buyer_rating(
            db.session, access.call, access.party, app_url=settings.app_url, secret_key=settings.secret_key
        )
        page_html = render_template(
            "call/ended.html",
            call=access.call,
            party=access.party,
            state=state,
            problem=problem,
            seller_name=page.other_name,
            rate_url=rating.url,
            rating_stars=rating.stars,
        )
        return credential_page(page_html, 410)
    if access.call.join_opens_at is not None and utcnow() < access.call.join_opens_at:
        return waiting_room(page, request.args["t"])  # booked for later: the room is not open yet
    response = credential_page(
        render_template(
            "call/room.html",
            call=access.call,
            party=access.party,
            other_name=page.other_name,
            token=request.args["t"],
            provider=access.call.video_provider or video_provider(settings).name,
            duration_seconds=settings.call_duration_seconds,
        ),
        200,
    )
    if access.call.video_provider == "daily" and access.call.room_url:
        response.headers["Permissions-Policy"] = _daily_permissions(access.call.room_url)
    return response


@bp.post("/api/video/create")
def create() -> Response:
    access = _access()
    answer = calls.prepare_room(db.session, access, provider=_provider(), config=_config(), now=utcnow())
    db.session.commit()
    return jsonify(answer)


@bp.post("/api/video/join")
def join() -> Response:
    access = _access()
    answer = call_presence.join_call(
        db.session,
        access,
        provider=_provider(),
        slots=_slots(),
        signaling=_signaling(),
        client_id=_client_id(),
        config=_config(),
        now=utcnow(),
    )
    db.session.commit()
    return jsonify(answer)


@bp.post("/api/video/presence")
def presence() -> Response:
    access = _access()
    state = _body().get("state")
    if state not in PRESENCE_STATES:
        raise ApiError(
            422, "state must be joined, connected or left.", fields={"state": "Use joined, connected or left."}
        )
    answer = call_presence.report_presence(
        db.session,
        access,
        state,
        provider=_provider(),
        slots=_slots(),
        client_id=_client_id(),
        config=_config(),
        now=utcnow(),
    )
    db.session.commit()
    return jsonify(answer)


@bp.post("/api/video/end")
def end() -> Response:
    access = _access()
    answer = call_endings.end_by_party(db.session, access, config=_config(), now=utcnow())
    db.session.commit()
    return jsonify(answer)


@bp.post("/api/video/signal")
def signal() -> Response:
    """Post one offer, answer, ICE candidate, hello or bye to the other party (built-in room)."""
    access = _live_builtin(_access())
    message = validate_message(_body().get("message"))
    message_id = _signaling().send(str(access.call.id), access.party, message)
    return make_response(jsonify(id=message_id), 202)


@bp.post("/api/video/signal/poll")
def poll() -> Response:
    """Messages for this party newer than ``after``, with the call's state (the page's clock).
    After the end it answers the final state with no messages: that is how a page learns the
    seller ended the call."""
    access = _access()
    after = _body().get("after")
    if access.ended:
        cursor = after if isinstance(after, str) else None
        return jsonify(messages=[], cursor=cursor, **calls.call_state(access.call, utcnow(), party=access.party))
    access = _live_builtin(access)
    if not _slots().claim(str(access.call.id), access.party, _client_id()):
        raise ApiError(409, "This link is now open in another window.", code="in_use")
    messages, cursor = _signaling().poll(str(access.call.id), access.party, after)
    return jsonify(messages=messages, cursor=cursor, **calls.call_state(access.call, utcnow(), party=access.party))


# Parsing and collaborators.


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True, force=True)
    if not isinstance(body, dict):
        raise ApiError(400, "Send a JSON object.")
    return body


def _access() -> CallAccess:
    body = _body()
    request_id, token = body.get("requestId"), body.get("token")
    if not isinstance(request_id, str) or not isinstance(token, str) or not request_id or not token:
        raise ApiError(422, "requestId and token are required.", fields={"token": "Use the link you were sent."})
    settings = current_app.extensions["settings"]
    return calls.check_access(db.session, request_id, token, secret_key=settings.secret_key, now=utcnow())


def _live_builtin(access: CallAccess) -> CallAccess:
    if access.ended:
        raise Conflict("call_ended", "This call has ended.")
    if access.call.video_provider != "builtin":
        raise Conflict("wrong_provider", "This call does not use the built-in room.")
    return access


def _client_id() -> str:
    client_id = _body().get("clientId")
    if not isinstance(client_id, str) or not CLIENT_ID.match(client_id):
        raise ApiError(422, "clientId is required.", fields={"clientId": "8 to 64 letters, digits, - or _."})
    return client_id


def _config() -> CallConfig:
    return CallConfig.from_settings(current_app.extensions["settings"])


def _provider() -> VideoProvider:
    return video_provider(current_app.extensions["settings"], interactive=True)


def _namespace() -> str:
    return f"chatlink:{current_app.extensions['settings'].celery_queue}"


def _slots() -> PresenceSlots:
    return PresenceSlots(redis_client(), _namespace())


def _signaling() -> Signaling:
    return Signaling(redis_client(), _namespace())


def _daily_permissions(room_url: str) -> str:
    """Daily Prebuilt runs in an iframe from the room's origin; the site-wide policy lets only
    our own origin use the camera, which would leave the iframe blind and mute."""
    parts = urlsplit(room_url)
    origin = f'"{parts.scheme}://{parts.netloc}"'
    allowed = ", ".join(f"{feature}=(self {origin})" for feature in DAILY_FEATURES)
    return f"{allowed}, geolocation=()"
