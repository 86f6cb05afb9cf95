"""The buyer's own controls on their status page: cancel a request the seller has not answered.

Only the browser that paid may cancel (it holds the checkout's cookie, see ``app/web/payments.py``);
the Checkout Session id in the address is not enough. ``POST /success/cancel`` is the page's form
(no script needed); ``POST /api/requests/status/cancel`` its JSON twin.
"""

from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, request, url_for
from flask.typing import ResponseReturnValue

from app.db import db, utcnow
from app.errors import ApiError
from app.extensions import limiter
from app.refusals import Refusal
from app.services.buyer_status import cancel_by_buyer
from app.web.payments import _browser_key  # the one reader of the checkout's cookie

bp = Blueprint("buyer", __name__)

cancel_limit = limiter.shared_limit("20/minute", scope="buyer-cancel", methods=["POST"])


@bp.post("/success/cancel")
@cancel_limit
def cancel_form() -> ResponseReturnValue:
    session_id = request.form.get("session_id", "")[:255]
    back = url_for("payments.success", session_id=session_id)
    try:
        cancel_by_buyer(db.session, session_id, browser_key=_browser_key(session_id), now=utcnow())
    except Refusal as refusal:
        db.session.rollback()
        flash(refusal.message, "error")
        return redirect(back, 303)
    db.session.commit()
    flash("Your request is cancelled and the hold on your card is released.", "success")
    return redirect(back, 303)


@bp.post("/api/requests/status/cancel")
@cancel_limit
def api_cancel() -> ResponseReturnValue:
    body = request.get_json(silent=True)
    session_id = body.get("sessionId") if isinstance(body, dict) else None
    if not isinstance(session_id, str) or not 0 < len(session_id) <= 255:
        raise ApiError(422, "Send the sessionId of your checkout.", fields={"sessionId": "Required."})
    cancel_by_buyer(db.session, session_id, browser_key=_browser_key(session_id), now=utcnow())
    db.session.commit()
    return jsonify(cancelled=True)
