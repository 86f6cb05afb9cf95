"""The built-in test-mode checkout: Stripe's part, played by the app when ``STRIPE_SECRET_KEY`` is unset.

It answers the ``PaymentGateway`` calls (``app.integrations.payments``) from its own state in Redis,
with Stripe's shapes, state rules and idempotency, and announces every change as a Stripe-shaped
event that a worker posts to the app's own webhook, signed as Stripe signs.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from collections.abc import Callable
from typing import Any, cast

import stripe
from redis import Redis
from redis.lock import Lock

from app.config import Settings
from app.integrations.payments import (
    CheckoutRequest,
    CheckoutSnapshot,
    CreatedCheckout,
    PaymentError,
    snapshot_of,
)

BUILTIN_TTL_SECONDS = 30 * 24 * 3600  # Stripe remembers idempotency keys at least 24 h; we keep all 30 days
HOLD_SECONDS = 7 * 24 * 3600  # capture_before of a held card payment: created + 7 days, as Stripe says it
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
        if intent is not None:  # expanded, as StripeGateway asks Stripe to
            intent = dict(intent, latest_charge=self._charge(intent))
        return snapshot_of(session, intent)

    def capture(self, payment_intent_id: str, *, idempotency_key: str) -> str:
        def action() -> dict[str, Any]:
            intent = self._require("pi", payment_intent_id)
            _require_status(intent, ("requires_capture",), "captured")
            intent.update(status="succeeded", amount_received=intent["amount"], amount_capturable=0)
            self._save("pi", intent)
            return intent

        return str(
            self._idempotent(idempotency_key, f"capture:{payment_intent_id}", payment_intent_id, action)["status"]
        )

    def cancel(self, payment_intent_id: str, *, idempotency_key: str) -> str:
        def action() -> dict[str, Any]:
            intent = self._require("pi", payment_intent_id)
            _require_status(intent, _CANCELLABLE, "canceled")
            intent.update(status="canceled", amount_capturable=0, canceled_at=int(time.time()))
            self._save("pi", intent)
            return intent

        return str(
            self._idempotent(idempotency_key, f"cancel:{payment_intent_id}", payment_intent_id, action)["status"]
        )

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

        answer = self._idempotent(
            idempotency_key, f"refund:{payment_intent_id}:{amount_cents}", payment_intent_id, action
        )
        return str(answer["status"])

    def payment_intent_for_charge(self, charge_id: str) -> str | None:
        return cast(str | None, self.redis.get(self._key("ch", charge_id)))

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
        due = cast(list[str], self.redis.zrangebyscore(self._key("open"), "-inf", time.time() if now is None else now))
        expired = 0
        for session_id in due:
            try:
                expired += self.expire(session_id)["status"] == "expired"
            except PaymentError:  # the session itself is gone (older than 30 days)
                self.redis.zrem(self._key("open"), session_id)
        return expired

    def seed_session(self, session: dict[str, Any], intent: dict[str, Any] | None = None) -> None:
        """Store a session (and its PaymentIntent) as they are, for benchmarks and tests; an
        intent given without its charge gets one, as the gateway's own intents have."""
        if intent is not None:
            self._save_intent({"latest_charge": _new_id("ch_test"), **intent})
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
            "_line_item": request.product_name,
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
        }  # fmt: skip
        return self._save_intent(intent)

    def _save_intent(self, intent: dict[str, Any]) -> dict[str, Any]:
        """Store a new intent with its charge's private record (what it has had refunded) and
        the charge id's way back to it."""
        intent.setdefault("_charge", {"id": intent["latest_charge"], "amount_refunded": 0})
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
            "payment_method_details": {"type": "card", "card": {
                "brand": "visa", "last4": "4242",
                # A card hold lasts about seven days (Stripe's figure for online card payments).
                "capture_before": _capture_before(intent),
            }},
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

    def _idempotent(
        self, key: str, fingerprint: str, lock: str, action: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """Run ``action`` once per idempotency key and answer repeats with the stored result."""
        with self._lock(lock):
            stored_raw = cast(str | None, self.redis.get(self._key("idem", key)))
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
                return cast(dict[str, Any], stored["response"])
            record: dict[str, Any] = {"fingerprint": fingerprint}
            try:
                record["response"] = action()
            except PaymentError as exc:
                record["error"] = {"message": str(exc), "code": exc.code}
                raise
            finally:
                if "response" in record or "error" in record:
                    self.redis.set(self._key("idem", key), json.dumps(record), ex=BUILTIN_TTL_SECONDS)
            return cast(dict[str, Any], record["response"])

    def _key(self, kind: str, ident: str = "") -> str:
        return f"{self.ns}:{kind}:{ident}" if ident else f"{self.ns}:{kind}"

    def _lock(self, name: str) -> Lock:
        return cast(Lock, self.redis.lock(self._key("lock", name), timeout=10, blocking_timeout=10))

    def _load(self, kind: str, ident: str) -> dict[str, Any] | None:
        raw = cast(str | None, self.redis.get(self._key(kind, ident)))
        return cast(dict[str, Any], json.loads(raw)) if raw else None

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


def _capture_before(intent: dict[str, Any]) -> int | None:
    if intent.get("capture_method") != "manual" or not intent.get("created"):
        return None
    return int(intent["created"]) + HOLD_SECONDS


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without the built-in gateway's private fields (those starting with ``_``)."""
    return {key: value for key, value in obj.items() if not key.startswith("_")}


def _status(answer: dict[str, Any]) -> str:
    return str(answer["status"])


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def builtin_gateway(settings: Settings, redis: Redis, *, notify: EventSink | None = None) -> BuiltinGateway:
    return BuiltinGateway(
        redis,
        namespace=f"chatlink:{settings.celery_queue}:stripe",
        app_url=settings.app_url,
        notify=notify or _deliver_to_own_webhook,
    )


def _deliver_to_own_webhook(event: dict[str, Any]) -> None:
    # Imported here: the task module imports this one.
    from app.queue import enqueue_now
    from tasks import builtin_payments as builtin_payment_tasks

    enqueue_now(builtin_payment_tasks.deliver_builtin_webhook, event)
