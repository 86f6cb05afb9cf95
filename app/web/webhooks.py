"""The webhooks: verify the signature on the raw body, store the event, answer at once.

Stripe (``/api/webhooks/stripe``):

The platform endpoint and the Connect endpoint (events of sellers' connected accounts, which carry
``account``) post here alike; each signs with its own secret, and any configured secret is accepted.

The work happens in ``tasks.stripe_events.process_stripe_event``, published once the row is committed,
so the answer takes milliseconds whatever the workers are doing; a duplicate delivery answers 200
and publishes nothing. Nothing is parsed before the signature is checked.

Daily (``/api/webhooks/daily``): the same, with Daily's signature (``DAILY_WEBHOOK_SECRET``) and
``tasks.daily_events.process_daily_event``. Without the secret the endpoint does not exist (404):
the worker polls Daily's presence instead.
"""

from __future__ import annotations

import json
import time

import stripe
from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from app import metrics
from app.db import db
from app.errors import ApiError
from app.extensions import csrf, limiter
from app.integrations import daily_webhooks
from app.services import daily_events
from app.services.stripe_events import publish_processing, record_event
from app.web.input_guard import clean_json_value, raw_body

bp = Blueprint("webhooks", __name__)

SIGNATURE_TOLERANCE = 300  # seconds, as stripe.Webhook.construct_event


def _refuse_future(header: str) -> None:
    """The stripe library refuses a signature older than the tolerance but takes one dated any
    time in the future, which would let a captured delivery be replayed for as long as its date
    lies ahead: bound the future by the same tolerance."""
    # Read as the library reads it: the first ``t=`` item, already checked to be a number.
    stamp = next(int(item[1]) for item in (part.split("=", 2) for part in header.split(",")) if item[0] == "t")
    if stamp > time.time() + SIGNATURE_TOLERANCE:
        raise ValueError("timestamp outside the tolerance zone")


@bp.post("/api/webhooks/stripe")
@bp.post("/webhooks/stripe")
@csrf.exempt  # authenticated by Stripe's signature instead
@limiter.exempt
@raw_body  # the signature covers the exact bytes: nothing parses them before it is checked
def stripe_webhook() -> ResponseReturnValue:
    payload = request.get_data(cache=False)
    signature = request.headers.get("Stripe-Signature", "")
    secrets = current_app.extensions["settings"].webhook_secrets
    try:
        _verify(payload, signature, secrets)
        _refuse_future(signature)
        event = json.loads(payload)
    except (ValueError, RecursionError, stripe.SignatureVerificationError):
        metrics.webhook_event("unverified", "invalid")
        raise ApiError(400, "Invalid payload or signature.", code="invalid_signature") from None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise ApiError(400, "Not a Stripe event.", code="invalid_payload")
    # A signed event is Stripe's and must be kept, but JSONB cannot hold NUL or a lone surrogate.
    event = clean_json_value(event)
    with db.autocommit() as connection:
        row_id = record_event(connection, event)
    if row_id is not None:  # a duplicate delivery publishes nothing
        publish_processing(row_id)
    return jsonify(received=True)


@bp.post("/api/webhooks/daily")
@csrf.exempt  # authenticated by Daily's signature instead
@limiter.exempt
def daily_webhook() -> ResponseReturnValue:
    secret = current_app.extensions["settings"].daily_webhook_secret
    if not secret:
        raise ApiError(404, "Not found.", code="not_found")
    payload = request.get_data(cache=False)
    if _is_daily_test_ping(payload):
        return jsonify(received=True)
    try:
        daily_webhooks.verify(
            payload,
            request.headers.get(daily_webhooks.SIGNATURE_HEADER),
            request.headers.get(daily_webhooks.TIMESTAMP_HEADER),
            secret,
            now=time.time(),
        )
        event = json.loads(payload)
    except (ValueError, daily_webhooks.InvalidSignature):
        raise ApiError(400, "Invalid payload or signature.", code="invalid_signature") from None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not event["id"]:
        raise ApiError(400, "Not a Daily event.", code="invalid_payload")
    with db.autocommit() as connection:
        row_id = daily_events.record_event(connection, event)
    if row_id is not None:  # a redelivery publishes nothing
        daily_events.publish_processing(row_id)
    return jsonify(received=True)


def _is_daily_test_ping(payload: bytes) -> bool:
    """Daily checks a new webhook's address with a small test body it may not sign, and creates
    the webhook only if it gets a 200. It is answered and nothing is stored or done."""
    if len(payload) > 200:
        return False
    try:
        body = json.loads(payload)
    except ValueError:
        return False
    return isinstance(body, dict) and set(body) == {"test"}


def _verify(payload: bytes, signature: str, secrets: tuple[str, ...]) -> None:
    """What construct_event checks (any v1 may match, v0 ignored), without building a StripeObject,
    which crashes on signed JSON that is not an object. Any of the endpoint secrets may have signed
    it: the platform endpoint's (two during a rotation) and the Connect endpoint's."""
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(payload, signature, secret, tolerance=SIGNATURE_TOLERANCE)
            return
        except stripe.SignatureVerificationError:
            continue
    raise stripe.SignatureVerificationError(  # type: ignore[no-untyped-call]  # stripe-python leaves __init__ unannotated
        "No signature matches any endpoint secret.", signature
    )
