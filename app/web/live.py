"""Live pages: the long-polls behind ``static/js/live.js`` (see ``app/live.py`` for the design).

``GET /api/live/seller?since=N`` (the seller's dashboard and requests page) and
``GET /api/live/checkout?session_id=...&since=N`` (the buyer's status page) answer
``{"version", "changed"}`` as soon as something changed since version ``N``, or after
``LIVE_WAIT_SECONDS``; with ``retryAfter`` when this process is at its bound of waiting requests.
The page then fetches itself again and swaps in its live regions: the server renders the page one
way, with or without JavaScript.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from flask_login import login_required

from app import live
from app.db import db
from app.errors import ApiError
from app.extensions import limiter
from app.web.auth import signed_in_user_id

bp = Blueprint("live", __name__)

# A long-poll comes back every WAIT seconds per open page, and at once after each change.
live_limit = limiter.shared_limit("120/minute", scope="live")


@bp.get("/api/live/seller")
@login_required
@live_limit
def seller() -> ResponseReturnValue:
    return _wait(live.seller_channel(signed_in_user_id()))


@bp.get("/api/live/checkout")
@live_limit
def checkout() -> ResponseReturnValue:
    session_id = request.args.get("session_id", "")
    if not session_id or len(session_id) > 255:
        raise ApiError(422, "Pass session_id, the id in your status page's address.", fields={"session_id": "1-255"})
    return _wait(live.checkout_channel(session_id))


def _wait(channel: str) -> Response:
    since = _since()
    # The wait needs no database: give the connection back to the pool before holding the thread.
    db.session.close()
    seconds = current_app.extensions["settings"].live_wait_seconds
    answer = live.feed().wait(channel, since, timeout=seconds, gone=client_gone(request.environ))
    response = jsonify(answer.to_json())
    response.headers["Cache-Control"] = "no-store"
    return response


def client_gone(environ: dict[str, Any]) -> Callable[[], bool]:
    """Whether the client of this request has closed its connection (its page was closed or left),
    read from the socket gunicorn hands the view: a peek that finds the end of the stream. Behind
    nginx the same holds, nginx closing its upstream connection when its client goes. Without a
    socket (another server, the test client) the client is never taken for gone."""
    client = environ.get("gunicorn.socket")
    if not isinstance(client, socket.socket):
        return lambda: False

    def gone() -> bool:
        try:
            return client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError, ValueError):  # nothing to read yet; TLS sockets take no flags
            return False
        except OSError:  # reset by the peer
            return True

    return gone


def _since() -> int:
    raw = request.args.get("since", "0")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise ApiError(422, "since must be the version the page was rendered with.", fields={"since": "0 or more"})
    return int(raw)


def page_version(channel: str) -> int:
    """The version a page renders with: read BEFORE the page's data (see ``app/live.py``)."""
    return live.feed().version(channel)
