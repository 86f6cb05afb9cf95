"""Stripe's webhook: verify the signature on the raw body, store the event, answer at once.

The platform endpoint and the Connect endpoint (events of sellers' connected accounts, which carry
``account``) post here alike; each signs with its own secret, and any configured secret is accepted.

The work happens in ``tasks.stripe_events.process_stripe_event``, published once the row is committed,
so the answer takes milliseconds whatever the workers are doing; a duplicate delivery answers 200
and publishes nothing. Nothing is parsed before the signature is checked.
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
