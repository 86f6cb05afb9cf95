"""The payment gateway interface: Stripe in production, the built-in test-mode checkout otherwise.

Both implementations answer the same calls with Stripe-shaped results, so nothing outside this
package can tell them apart. Every call that moves money takes a deterministic idempotency key
(``capture:<request id>``, ``cancel:<request id>``, ``refund:<request id>``), so a retried task
never moves money twice.

``payment_gateway(settings, redis)`` picks one: ``StripeGateway`` (here) when ``STRIPE_SECRET_KEY`` is
set, otherwise ``BuiltinGateway`` (``app.integrations.builtin_payments``), whose state lives in Redis
and whose events reach the app's own webhook signed with ``STRIPE_WEBHOOK_SECRET`` exactly as Stripe
signs them.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import requests
import stripe
from redis import Redis
from stripe.params import RefundCreateParams
from stripe.params.checkout import SessionCreateParams

from app.config import Settings


class PaymentError(Exception):
    """The gateway refused or failed. ``transient`` errors may succeed on retry (network, 429,
    5xx); the others will not (a declined capture, an expired hold)."""

    def __init__(self, message: str, *, transient: bool, code: str | None = None):
        super().__init__(message)
        self.transient = transient
        self.code = code


@dataclass(frozen=True)
class CheckoutRequest:
    seller_id: str
    seller_name: str
    product_name: str  # "5-minute video call with Ada": what the buyer sees they are paying for
    checkout_id: str  # our Checkout row's id, also used as the idempotency key of the creation
    amount_cents: int
    currency: str
    buyer_email: str
    capture_manually: bool
    success_url: str  # contains the literal {CHECKOUT_SESSION_ID}
    cancel_url: str
    expires_at: int  # unix seconds
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CreatedCheckout:
    session_id: str
    url: str


@dataclass(frozen=True)
class CheckoutSnapshot:
    """What a re-fetched Checkout Session (with its PaymentIntent) says."""

    session_id: str
    status: str  # open | complete | expired
    payment_status: str  # paid | unpaid | no_payment_required
    amount_total: int
    currency: str
    customer_email: str | None
    metadata: dict[str, str]
    payment_intent_id: str | None
    payment_intent_status: str | None  # requires_capture | succeeded | processing | canceled | ...
    # Until when a hold can be captured: the card charge's payment_method_details.card.capture_before
    # (Stripe sets it on manual-capture card payments); None when the gateway does not say.
    capture_before: datetime | None = None


class PaymentGateway(Protocol):
    def create_checkout(self, request: CheckoutRequest) -> CreatedCheckout: ...

    def retrieve_checkout(self, session_id: str) -> CheckoutSnapshot: ...

    def capture(self, payment_intent_id: str, *, idempotency_key: str) -> str:
        """Capture a hold; returns the PaymentIntent's new status (``succeeded``)."""
        ...

    def cancel(self, payment_intent_id: str, *, idempotency_key: str) -> str:
        """Release a hold; returns the PaymentIntent's new status (``canceled``)."""
        ...

    def refund(self, payment_intent_id: str, *, idempotency_key: str, amount_cents: int | None = None) -> str:
        """Refund a captured payment (all of it unless ``amount_cents``); returns the Refund's status."""
        ...

    def payment_intent_for_charge(self, charge_id: str) -> str | None:
        """The PaymentIntent a Charge belongs to (disputes in older API shapes name only the charge)."""
        ...


# --- Helpers shared by both gateways and the tests -------------------------------------------------


def sign_payload(payload: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header for ``payload``, computed exactly as Stripe does: hex
    HMAC-SHA256 keyed with the endpoint secret over ``"<t>." + raw body``."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def post_signed_event(url: str, event: dict[str, Any], secret: str, *, timeout: float = 10.0) -> int:
    """Deliver ``event`` the way Stripe does: pretty-printed JSON, signed now, no redirects
    followed (Stripe counts a redirect as a failure). Returns the HTTP status."""
    payload = json.dumps(event, indent=2).encode()
    response = requests.post(
        url,
        data=payload,
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": sign_payload(payload, secret),
            "User-Agent": "ChatLink-TestModeCheckout/1.0 (like Stripe/1.0)",
        },
        timeout=(3.05, timeout),
        allow_redirects=False,
    )
    return response.status_code


def snapshot_of(session: dict[str, Any], intent: dict[str, Any] | None) -> CheckoutSnapshot:
    details = session.get("customer_details") or {}
    return CheckoutSnapshot(
        session_id=session["id"],
        status=session.get("status") or "open",
        payment_status=session.get("payment_status") or "unpaid",
        amount_total=int(session.get("amount_total") or 0),
        currency=session.get("currency") or "",
        customer_email=details.get("email") or session.get("customer_email"),
        metadata=dict(session.get("metadata") or {}),
        payment_intent_id=intent["id"] if intent else None,
        payment_intent_status=intent.get("status") if intent else None,
        capture_before=capture_before_of(intent),
    )


def capture_before_of(intent: dict[str, Any] | None) -> datetime | None:
    """``latest_charge.payment_method_details.card.capture_before`` of an expanded PaymentIntent,
    as an aware datetime. Not a card, not expanded, or not said: None."""
    charge = (intent or {}).get("latest_charge")
    if not isinstance(charge, dict):
        return None
    card = (charge.get("payment_method_details") or {}).get("card") or {}
    value = card.get("capture_before")
    return datetime.fromtimestamp(int(value), UTC) if isinstance(value, int | float) and value > 0 else None


# --- Stripe --------------------------------------------------------------------------------------


class StripeGateway:
    """The real thing, through stripe-python. ``api_base`` points it at a local fake in tests."""

    def __init__(
        self, api_key: str, *, api_base: str | None = None, timeout: float = 15.0, max_network_retries: int = 2
    ) -> None:
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            # The library retries connection errors, 409 and 5xx itself, reusing our idempotency key.
            max_network_retries=max_network_retries,
            http_client=stripe.RequestsClient(timeout=timeout),
        )

    def create_checkout(self, request: CheckoutRequest) -> CreatedCheckout:
        params: SessionCreateParams = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": request.currency,
                        "unit_amount": request.amount_cents,
                        "product_data": {"name": request.product_name},
                    },
                }
            ],
            "customer_email": request.buyer_email,
            "client_reference_id": request.checkout_id,
            "metadata": dict(request.metadata),
            "payment_intent_data": {
                "capture_method": "manual" if request.capture_manually else "automatic",
                "metadata": dict(request.metadata),
            },
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
            "expires_at": request.expires_at,
        }
        with _stripe_errors():
            session = self.client.v1.checkout.sessions.create(
                params=params,
                options={"idempotency_key": f"checkout:{request.checkout_id}"},
            )
        return CreatedCheckout(session_id=session.id, url=session.url or "")

    def retrieve_checkout(self, session_id: str) -> CheckoutSnapshot:
        with _stripe_errors():
            # The charge says until when its hold can be captured (capture_before).
            expand = ["payment_intent", "payment_intent.latest_charge"]
            session = self.client.v1.checkout.sessions.retrieve(session_id, params={"expand": expand})
        data = session.to_dict()
        intent = data.get("payment_intent")
        if isinstance(intent, str):  # not expanded (should not happen); fetch it
            with _stripe_errors():
                intent = self.client.v1.payment_intents.retrieve(intent).to_dict()
        return snapshot_of(data, intent)

    def capture(self, payment_intent_id: str, *, idempotency_key: str) -> str:
        with _stripe_errors():
            intent = self.client.v1.payment_intents.capture(
                payment_intent_id, options={"idempotency_key": idempotency_key}
            )
        return intent.status

    def cancel(self, payment_intent_id: str, *, idempotency_key: str) -> str:
        with _stripe_errors():
            intent = self.client.v1.payment_intents.cancel(
                payment_intent_id, options={"idempotency_key": idempotency_key}
            )
        return intent.status

    def refund(self, payment_intent_id: str, *, idempotency_key: str, amount_cents: int | None = None) -> str:
        params: RefundCreateParams = {"payment_intent": payment_intent_id}
        if amount_cents is not None:
            params["amount"] = amount_cents
        with _stripe_errors():
            options: stripe.RequestOptions = {"idempotency_key": idempotency_key}
            refund = self.client.v1.refunds.create(params=params, options=options)
        return refund.status or "pending"

    def payment_intent_for_charge(self, charge_id: str) -> str | None:
        with _stripe_errors():
            charge = self.client.v1.charges.retrieve(charge_id)
        intent = charge.to_dict().get("payment_intent")
        return intent if isinstance(intent, str) else (intent or {}).get("id")


@contextmanager
def _stripe_errors() -> Iterator[None]:
    """Translate stripe-python's exceptions into ``PaymentError``: network trouble, 429, 409
    (a concurrent request with the same key) and 5xx may pass on retry; other 4xx will not."""
    try:
        yield
    except stripe.StripeError as exc:
        status = exc.http_status
        transient = isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError) or (
            status is not None and (status >= 500 or status in (409, 429))
        )
        raise PaymentError(exc.user_message or str(exc), transient=transient, code=exc.code) from exc


# --- Choosing one --------------------------------------------------------------------------------


def payment_gateway(settings: Settings, redis: Redis) -> PaymentGateway:
    """Stripe when ``STRIPE_SECRET_KEY`` is set, else the built-in test-mode checkout."""
    if settings.stripe_secret_key:
        return _stripe_gateway(settings.stripe_secret_key, settings.stripe_api_base)
    # Imported here: the built-in gateway's module imports this one for the shared types.
    from app.integrations.builtin_payments import builtin_gateway

    return builtin_gateway(settings, redis)


@functools.lru_cache(maxsize=4)
def _stripe_gateway(api_key: str, api_base: str | None) -> StripeGateway:
    # One client (and its HTTP connection pool) per key, shared by every request and task.
    return StripeGateway(api_key, api_base=api_base)
