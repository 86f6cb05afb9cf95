"""The dev mailbox: every outbox email, readable in the browser, when no Postmark token is set.

``/dev/mailbox`` lists them newest first; ``/dev/mailbox/<id>`` shows one (its HTML inside a
sandboxed iframe served by ``/dev/mailbox/<id>/html``, its attachments served as downloads by
``/dev/mailbox/<id>/attachments/<n>``); ``/dev/mailbox.json`` is the same list for
scripts and browser tests that need a link from an email. Outside development (a Postmark token
set, or APP_ENV=production) every one of these answers 404.
"""

from __future__ import annotations

import base64
import uuid

from flask import Blueprint, Response, abort, current_app, jsonify, render_template, request, url_for
from flask.typing import ResponseReturnValue

from app.db import db
from app.formats import iso
from app.models import OutboxEmail
from app.services.email_delivery import attachments_of, list_emails
from app.services.outbox import find_email
from app.web.security import content_security_policy

bp = Blueprint("dev_mailbox", __name__, url_prefix="/dev")

PAGE_SIZE = 200
JSON_LIMIT_MAX = 500

# The stored HTML is shown exactly as a mail client would: inline styles allowed, nothing else
# (no script, no request anywhere). The iframe is sandboxed too; frame-ancestors lets only our own
# detail page embed it.
EMAIL_HTML_CSP = "; ".join(
    [
        "default-src 'none'",
        "style-src 'unsafe-inline'",
        "img-src data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'self'",
        "sandbox",
    ]
)


@bp.before_request
def only_with_the_dev_mailbox() -> None:
    settings = current_app.extensions["settings"]
    if settings.is_production or not settings.uses_dev_mailbox:
        abort(404)


@bp.get("/mailbox")
def mailbox() -> ResponseReturnValue:
    return render_template("dev/mailbox.html", emails=list_emails(db.session, limit=PAGE_SIZE))


@bp.get("/mailbox.json")
def mailbox_json() -> ResponseReturnValue:
    raw_limit = request.args.get("limit", "50")
    limit = int(raw_limit) if raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 6 else 50
    recipient = request.args.get("recipient") or None
    emails = list_emails(db.session, limit=max(1, min(limit, JSON_LIMIT_MAX)), recipient=recipient)
    return jsonify({"emails": [_as_json(email) for email in emails]})


@bp.get("/mailbox/<uuid:email_id>")
def message(email_id: uuid.UUID) -> ResponseReturnValue:
    email = find_email(db.session, email_id) or abort(404)
    response = Response(render_template("dev/mailbox_message.html", email=email))
    # The site-wide policy forbids frames; this page embeds one, from our own origin only.
    response.headers["Content-Security-Policy"] = _allow_self_frames(content_security_policy())
    return response


@bp.get("/mailbox/<uuid:email_id>/html")
def message_html(email_id: uuid.UUID) -> ResponseReturnValue:
    email = find_email(db.session, email_id) or abort(404)
    if email.html_body is None:
        abort(404)
    response = Response(email.html_body, mimetype="text/html")
    response.headers["Content-Security-Policy"] = EMAIL_HTML_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/mailbox/<uuid:email_id>/attachments/<int:index>")
def attachment(email_id: uuid.UUID, index: int) -> ResponseReturnValue:
    """One attached file (a calendar invitation), exactly as it was sent, as a download."""
    email = find_email(db.session, email_id) or abort(404)
    files = attachments_of(email)
    if not 0 <= index < len(files):
        abort(404)
    item = files[index]
    response = Response(base64.b64decode(item.content_base64), content_type=item.content_type)
    response.headers["Content-Disposition"] = f'attachment; filename="{item.name}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


def _allow_self_frames(policy: str) -> str:
    """``policy`` with our own origin added to ``frame-src`` (replacing ``'none'``)."""
    directives = [part.strip() for part in policy.split(";") if part.strip()]
    others = [d for d in directives if d.split()[0] != "frame-src"]
    sources = {s for d in directives if d.split()[0] == "frame-src" for s in d.split()[1:]} - {"'none'"}
    return "; ".join([*others, " ".join(["frame-src", "'self'", *sorted(sources - {"'self'"})])])


def _as_json(email: OutboxEmail) -> dict[str, object]:
    return {
        "id": str(email.id),
        "recipient": email.recipient,
        "template": email.template,
        "subject": email.subject,
        "status": email.status.value,
        "textBody": email.text_body,
        "htmlBody": email.html_body,
        "createdAt": iso(email.created_at),
        "sentAt": iso(email.sent_at),
        "attachments": [
            {
                "name": item.name,
                "contentType": item.content_type,
                "url": url_for("dev_mailbox.attachment", email_id=email.id, index=index),
            }
            for index, item in enumerate(attachments_of(email))
        ],
    }
