"""Building calls in the states the call's tests need, and a fake payment gateway."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from app.db import utcnow
from app.integrations.payments import PaymentError
from app.models import CallRequest, PaymentState, RequestStatus
from app.services.calls import room_name_for
from tests.factories import CallRequestFactory, ProfileFactory, TransactionFactory

SECRET_KEY = "test-secret-key-that-is-long-enough-0123456789"  # tests/conftest.py's settings


def accepted_call(
    *,
    now: datetime | None = None,
    room: str | None = "builtin",
    join_window_seconds: int = 900,
    payment_state: PaymentState = PaymentState.CAPTURED,
    seller_name: str = "Ada Lovelace",
    room_url: str | None = None,
) -> CallRequest:
    """An ACCEPTED request as helper "requests" leaves it (join key, join deadline), paid, and with
    its room already made by ``provider`` (None: no room yet)."""
    now = now or utcnow()
    profile = ProfileFactory(display_name=seller_name)
    transaction = TransactionFactory(seller=profile.user, payment_state=payment_state)
    call = CallRequestFactory(
        transaction=transaction,
        status=RequestStatus.ACCEPTED,
        accepted_at=now,
        join_deadline=now + timedelta(seconds=join_window_seconds),
        join_key=secrets.token_urlsafe(32),
    )
    if room is not None:
        call.video_provider = room
        call.room_name = room_name_for(SECRET_KEY, call)
        call.room_url = room_url or f"http://127.0.0.1:5000/call/{call.id}"
        call.room_ready_at = now
    CallRequestFactory._meta.sqlalchemy_session_factory().flush()
    return call


@dataclass
class FakeGateway:
    """The PaymentGateway calls the call's code makes, recorded; failures scripted per call."""

    calls: list[tuple[str, str, str]] = field(default_factory=list)
    errors: list[PaymentError] = field(default_factory=list)

    def _answer(self, action: str, intent: str, key: str, status: str) -> str:
        self.calls.append((action, intent, key))
        if self.errors:
            raise self.errors.pop(0)
        return status

    def refund(self, payment_intent_id: str, *, idempotency_key: str, amount_cents: int | None = None) -> str:
        return self._answer("refund", payment_intent_id, idempotency_key, "succeeded")

    def cancel(self, payment_intent_id: str, *, idempotency_key: str) -> str:
        return self._answer("cancel", payment_intent_id, idempotency_key, "canceled")

    def capture(self, payment_intent_id: str, *, idempotency_key: str) -> str:
        return self._answer("capture", payment_intent_id, idempotency_key, "succeeded")
