"""The payment gateway interface: Stripe in production, the built-in test-mode checkout otherwise.

Both implementations answer the same calls with Stripe-shaped results, so nothing outside this
package can tell them apart. Every call that moves money takes a deterministic idempotency key
(``capture:<request id>``, ``cancel:<request id>``, ``refund:<request id>``), so a retried task
never moves money twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


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
