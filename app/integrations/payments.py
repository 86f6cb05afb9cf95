"""The payment gateway interface: Stripe in production, the built-in test-mode checkout otherwise.

Both implementations answer the same calls with Stripe-shaped results, so nothing outside this
package can tell them apart. Every call that moves money takes a deterministic idempotency key
(``capture:<request id>``, ``cancel:<request id>``, ``refund:<request id>``), so a retried task
never moves money twice.

``payment_gateway(settings, redis)`` picks one: ``StripeGateway`` when ``STRIPE_SECRET_KEY`` is set,
otherwise ``BuiltinGateway``, whose state lives in Redis and whose events reach the app's own webhook
signed with ``STRIPE_WEBHOOK_SECRET`` exactly as Stripe signs them.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
import stripe
from redis import Redis
from redis.lock import Lock

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


def _snapshot(session: dict[str, Any], intent: dict[str, Any] | None) -> CheckoutSnapshot:
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
    )


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
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": request.currency,
                        "unit_amount": request.amount_cents,
                        "product_data": {"name": product_name(request.seller_name)},
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
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": f"checkout:{request.checkout_id}"},
            )
        return CreatedCheckout(session_id=session.id, url=session.url or "")

    def retrieve_checkout(self, session_id: str) -> CheckoutSnapshot:
        with _stripe_errors():
            session = self.client.v1.checkout.sessions.retrieve(session_id, params={"expand": ["payment_intent"]})
        data = session.to_dict()
        intent = data.get("payment_intent")
        if isinstance(intent, str):  # not expanded (should not happen); fetch it
            with _stripe_errors():
                intent = self.client.v1.payment_intents.retrieve(intent).to_dict()
        return _snapshot(data, intent)

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
        params: dict[str, Any] = {"payment_intent": payment_intent_id}
        if amount_cents is not None:
            params["amount"] = amount_cents
        with _stripe_errors():
            refund = self.client.v1.refunds.create(params=params, options={"idempotency_key": idempotency_key})  # type: ignore[arg-type]
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


def product_name(seller_name: str) -> str:
    return f"5-minute video call with {seller_name}"


# --- The built-in test-mode checkout -------------------------------------------------------------

BUILTIN_TTL_SECONDS = 30 * 24 * 3600  # Stripe remembers idempotency keys at least 24 h; we keep all 30 days
_CANCELLABLE = ("requires_payment_method", "requires_confirmation", "requires_action", "requires_capture", "processing")

EventSink = Callable[[dict[str, Any]], None]


class BuiltinGateway:
    """Stripe's checkout, played by the app itself (no ``STRIPE_SECRET_KEY``).

    Sessions and PaymentIntents live in Redis as Stripe-shaped JSON; capture, cancel and refund
    follow Stripe's state rules and honour idempotency keys (same key and parameters: the first
    answer again; same key, other parameters: an error). The page at ``/dev/checkout/<id>`` calls
    ``pay`` or ``expire``, and every change Stripe would announce is handed to ``notify`` as a
    Stripe-shaped event, which the app delivers to its own webhook, signed, from a worker.
    """

    def __init__(self, redis: Redis, *, namespace: str, app_url: str, notify: EventSink | None = None) -> None:
        self.redis = redis
        self.ns = namespace
        self.app_url = app_url.rstrip("/")
        self.notify = notify or (lambda event: None)

    # The PaymentGateway interface.

    def create_checkout(self, request: CheckoutRequest) -> CreatedCheckout:
        key = f"checkout:{request.checkout_id}"
        fingerprint = json.dumps(dataclasses.asdict(request), sort_keys=True)
        session = self._idempotent(key, fingerprint, lock=key, action=lambda: self._new_session(request))
        return CreatedCheckout(session_id=session["id"], url=session["url"])

    def retrieve_checkout(self, session_id: str) -> CheckoutSnapshot:
        session = self._require("cs", session_id)
        intent = self._load("pi", session["payment_intent"]) if session.get("payment_intent") else None
        return _snapshot(session, intent)

    def capture(self, payment_intent_id: str, *, idempotency_key: str) -> str:
        def action() -> dict[str, Any]:
            intent = self._require("pi", payment_intent_id)
            _require_status(intent, ("requires_capture",), "captured")
            intent.update(status="succeeded", amount_received=intent["amount"], amount_capturable=0)
            self._save("pi", intent)
            return intent

        return self._idempotent(idempotency_key, f"capture:{payment_intent_id}", payment_intent_id, action)["status"]

    def cancel(self, payment_intent_id: str, *, idempotency_key: str) -> str:
        def action() -> dict[str, Any]:
            intent = self._require("pi", payment_intent_id)
            _require_status(intent, _CANCELLABLE, "canceled")
            intent.update(status="canceled", amount_capturable=0, canceled_at=int(time.time()))
            self._save("pi", intent)
            return intent

        return self._idempotent(idempotency_key, f"cancel:{payment_intent_id}", payment_intent_id, action)["status"]

    def refund(self, payment_intent_id: str, *, idempotency_key: str, amount_cents: int | None = None) -> str:
        def action() -> dict[str, Any]:
            intent = self._require("pi", payment_intent_id)
            _require_status(intent, ("succeeded",), "refunded")
            charge = intent["_charge"]
            remaining = intent["amount_received"] - charge["amount_refunded"]
            amount = remaining if amount_cents is None else amount_cents
            if amount <= 0 or amount > remaining:
                raise PaymentError(
                    f"Refund amount {amount} exceeds what is left ({remaining}).",
                    transient=False,
                    code="amount_too_large" if amount > 0 else "charge_already_refunded",
                )
            charge["amount_refunded"] += amount
            self._save("pi", intent)
            refund = {
                "id": _new_id("re"),
                "object": "refund",
                "amount": amount,
                "currency": intent["currency"],
                "payment_intent": intent["id"],
                "charge": charge["id"],
                "status": "succeeded",
            }
            self._emit("charge.refunded", self._charge(intent), idempotency_key)
            return refund

        return self._idempotent(
            idempotency_key, f"refund:{payment_intent_id}:{amount_cents}", payment_intent_id, action
        )["status"]

    def payment_intent_for_charge(self, charge_id: str) -> str | None:
        return self.redis.get(self._key("ch", charge_id))

    # What the buyer does on the test-mode checkout page.

    def session(self, session_id: str) -> dict[str, Any]:
        """The session as Stripe would return it, plus ``product_name`` (for the checkout page)."""
        session = self._require("cs", session_id)
        return {**_public(session), "product_name": session["_line_item"]}

    def pay(self, session_id: str) -> dict[str, Any]:
        """The buyer paid: a hold (manual capture) or a charge, then ``checkout.session.completed``."""
        with self._lock(session_id):
            session = self._require("cs", session_id)
            if session["status"] == "open" and session["expires_at"] <= time.time():
                session = self._expire_locked(session)
            if session["status"] != "open":
                raise PaymentError(f"This checkout is {session['status']}.", transient=False, code="checkout_not_open")
            intent = self._new_intent(session)
            session.update(
                status="complete",
                payment_status="paid" if intent["status"] == "succeeded" else "unpaid",
                payment_intent=intent["id"],
                customer_details={"email": session["customer_email"]},
            )
            self._save("cs", session)
            self.redis.zrem(self._key("open"), session_id)
            self._emit("checkout.session.completed", _public(session))
            return _public(session)

    def expire(self, session_id: str) -> dict[str, Any]:
        """The buyer cancelled (or the session ran out): ``checkout.session.expired``, once."""
        with self._lock(session_id):
            session = self._require("cs", session_id)
            if session["status"] == "open":
                session = self._expire_locked(session)
            return _public(session)

    def expire_overdue(self, now: float | None = None) -> int:
        """Expire every open session past its ``expires_at`` (Stripe does this on its own)."""
        due = self.redis.zrangebyscore(self._key("open"), "-inf", now if now is not None else time.time())
        expired = 0
        for session_id in due:
            try:
                expired += self.expire(session_id)["status"] == "expired"
            except PaymentError:  # the session itself is gone (older than 30 days)
                self.redis.zrem(self._key("open"), session_id)
        return expired

    def seed_session(self, session: dict[str, Any], intent: dict[str, Any] | None = None) -> None:
        """Store a session (and its PaymentIntent) as they are; for benchmarks and tests."""
        if intent is not None:
            self._save("pi", intent)
        self._save("cs", session)

    # Internals.

    def _new_session(self, request: CheckoutRequest) -> dict[str, Any]:
        session_id = _new_id("cs_test")
        session = {
            "id": session_id, "object": "checkout.session", "mode": "payment", "livemode": False,
            "status": "open", "payment_status": "unpaid", "created": int(time.time()),
            "amount_subtotal": request.amount_cents, "amount_total": request.amount_cents,
            "currency": request.currency, "customer_email": request.buyer_email, "customer_details": None,
            "client_reference_id": request.checkout_id, "metadata": dict(request.metadata),
            "payment_intent": None, "expires_at": request.expires_at,
            "success_url": request.success_url, "cancel_url": request.cancel_url,
            "url": f"{self.app_url}/dev/checkout/{session_id}",
            "_line_item": product_name(request.seller_name),
            "_capture_method": "manual" if request.capture_manually else "automatic",
        }  # fmt: skip
        self._save("cs", session)
        self.redis.zadd(self._key("open"), {session_id: request.expires_at})
        return session

    def _new_intent(self, session: dict[str, Any]) -> dict[str, Any]:
        manual = session["_capture_method"] == "manual"
        amount = session["amount_total"]
        intent = {
            "id": _new_id("pi_test"), "object": "payment_intent", "amount": amount, "currency": session["currency"],
            "capture_method": session["_capture_method"], "metadata": dict(session["metadata"]),
            "status": "requires_capture" if manual else "succeeded", "created": int(time.time()),
            "amount_capturable": amount if manual else 0, "amount_received": 0 if manual else amount,
            "latest_charge": _new_id("ch_test"),
            "_charge": {"amount_refunded": 0},
        }  # fmt: skip
        intent["_charge"]["id"] = intent["latest_charge"]
        self._save("pi", intent)
        self.redis.set(self._key("ch", intent["latest_charge"]), intent["id"], ex=BUILTIN_TTL_SECONDS)
        return intent

    def _expire_locked(self, session: dict[str, Any]) -> dict[str, Any]:
        session["status"] = "expired"
        self._save("cs", session)
        self.redis.zrem(self._key("open"), session["id"])
        self._emit("checkout.session.expired", _public(session))
        return session

    @staticmethod
    def _charge(intent: dict[str, Any]) -> dict[str, Any]:
        refunded = intent["_charge"]["amount_refunded"]
        return {
            "id": intent["latest_charge"], "object": "charge", "amount": intent["amount"],
            "amount_captured": intent["amount_received"], "amount_refunded": refunded,
            "refunded": refunded >= intent["amount_received"], "captured": True, "currency": intent["currency"],
            "payment_intent": intent["id"], "metadata": dict(intent["metadata"]), "status": "succeeded",
        }  # fmt: skip

    def _emit(self, event_type: str, obj: dict[str, Any], idempotency_key: str | None = None) -> None:
        self.notify(
            {
                "id": _new_id("evt_test"),
                "object": "event",
                "api_version": stripe.api_version,
                "created": int(time.time()),
                "livemode": False,
                "pending_webhooks": 1,
                "type": event_type,
                "request": {"id": None, "idempotency_key": idempotency_key},
                "data": {"object": obj},
            }
        )

    def _idempotent(self, key: str, fingerprint: str, lock: str, action: Callable[[], dict[str, Any]]) -> dict:
        """Run ``action`` once per idempotency key and answer repeats with the stored result."""
        with self._lock(lock):
            stored_raw = self.redis.get(self._key("idem", key))
            if stored_raw:
                stored = json.loads(stored_raw)
                if stored["fingerprint"] != fingerprint:
                    raise PaymentError(
                        "Keys for idempotent requests can only be used with the same parameters they were first "
                        "used with.",
                        transient=False,
                        code="idempotency_key_in_use",
                    )
                if "error" in stored:
                    raise PaymentError(stored["error"]["message"], transient=False, code=stored["error"]["code"])
                return stored["response"]
            record: dict[str, Any] = {"fingerprint": fingerprint}
            try:
                record["response"] = action()
            except PaymentError as exc:
                record["error"] = {"message": str(exc), "code": exc.code}
                raise
            finally:
                if "response" in record or "error" in record:
                    self.redis.set(self._key("idem", key), json.dumps(record), ex=BUILTIN_TTL_SECONDS)
            return record["response"]

    def _key(self, kind: str, ident: str = "") -> str:
        return f"{self.ns}:{kind}:{ident}" if ident else f"{self.ns}:{kind}"

    def _lock(self, name: str) -> Lock:
        return self.redis.lock(self._key("lock", name), timeout=10, blocking_timeout=10)

    def _load(self, kind: str, ident: str) -> dict[str, Any] | None:
        raw = self.redis.get(self._key(kind, ident))
        return json.loads(raw) if raw else None

    def _require(self, kind: str, ident: str) -> dict[str, Any]:
        found = self._load(kind, ident)
        if found is None:
            name = "checkout.session" if kind == "cs" else "payment_intent"
            raise PaymentError(f"No such {name}: '{ident}'", transient=False, code="resource_missing")
        return found

    def _save(self, kind: str, obj: dict[str, Any]) -> None:
        self.redis.set(self._key(kind, obj["id"]), json.dumps(obj), ex=BUILTIN_TTL_SECONDS)


def _require_status(intent: dict[str, Any], allowed: tuple[str, ...], verb: str) -> None:
    if intent["status"] not in allowed:
        raise PaymentError(
            f"This PaymentIntent could not be {verb} because it has a status of {intent['status']}.",
            transient=False,
            code="payment_intent_unexpected_state",
        )


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without the built-in gateway's private fields (those starting with ``_``)."""
    return {key: value for key, value in obj.items() if not key.startswith("_")}


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


# --- Choosing one --------------------------------------------------------------------------------


def payment_gateway(settings: Settings, redis: Redis, *, notify: EventSink | None = None) -> PaymentGateway:
    """Stripe when ``STRIPE_SECRET_KEY`` is set, else the built-in test-mode checkout."""
    if settings.stripe_secret_key:
        return _stripe_gateway(settings.stripe_secret_key, settings.stripe_api_base)
    return builtin_gateway(settings, redis, notify=notify)


def builtin_gateway(settings: Settings, redis: Redis, *, notify: EventSink | None = None) -> BuiltinGateway:
    return BuiltinGateway(
        redis,
        namespace=f"chatlink:{settings.celery_queue}:stripe",
        app_url=settings.app_url,
        notify=notify or _deliver_to_own_webhook,
    )


@functools.lru_cache(maxsize=4)
def _stripe_gateway(api_key: str, api_base: str | None) -> StripeGateway:
    # One client (and its HTTP connection pool) per key, shared by every request and task.
    return StripeGateway(api_key, api_base=api_base)


def _deliver_to_own_webhook(event: dict[str, Any]) -> None:
    from app.queue import enqueue_now

    enqueue_now(DELIVER_WEBHOOK_TASK, event)


DELIVER_WEBHOOK_TASK = "tasks.payments.deliver_builtin_webhook"
