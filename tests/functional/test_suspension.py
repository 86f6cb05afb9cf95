"""A suspended seller stops selling: a payment that arrives after the suspension is refused and
released at once, and the seller can no longer accept or decline (the attack this answers: a
checkout started before the suspension, paid after it, then accepted by the suspended seller)."""

from __future__ import annotations

import json
import secrets

from sqlalchemy import select, update

from app.db import utcnow
from app.integrations.builtin_payments import builtin_gateway
from app.integrations.payments import sign_payload
from app.models import CallRequest, CancelReason, OutboxEmail, RequestStatus, User
from tasks.request_payments import release_hold
from tasks.stripe_events import process_stripe_event
from tests.conftest import csrf_token, login
from tests.factories import AdminFactory, CallRequestFactory, ProfileFactory, TransactionFactory


def deliver_paid_event(app, client, settings, redis, enqueued, session_id: str) -> None:  # type: ignore[no-untyped-def]
    paid = builtin_gateway(settings, redis, notify=lambda event: None).pay(session_id)
    body = {
        "id": f"evt_{secrets.token_hex(12)}",
        "object": "event",
        "type": "checkout.session.completed",
        "livemode": False,
        "data": {"object": paid},
    }
    payload = json.dumps(body).encode()
    headers = {"Stripe-Signature": sign_payload(payload, settings.stripe_webhook_secret)}
    assert client.post("/api/webhooks/stripe", data=payload, headers=headers).status_code == 200
    row_id = next(args[0] for name, args, _ in enqueued if name == process_stripe_event.name)
    with app.app_context():
        process_stripe_event(row_id)


def test_a_payment_after_the_suspension_is_refused_and_released(  # type: ignore[no-untyped-def]
    app, client, db_session, settings, redis, enqueued
) -> None:
    profile = ProfileFactory(slug="grace", display_name="Grace")
    started = client.post(
        "/api/payments/checkout",
        json={"slug": "grace", "buyerEmail": "late@example.org"},
        headers={"X-CSRFToken": csrf_token(client)},
    )
    assert started.status_code == 201

    admin = app.test_client()
    login(admin, AdminFactory())
    suspended = admin.post(
        f"/api/admin/sellers/{profile.user_id}/suspend",
        json={"note": "fraud"},
        headers={"X-CSRFToken": csrf_token(admin)},
    )
    assert suspended.status_code == 200

    deliver_paid_event(app, client, settings, redis, enqueued, started.get_json()["sessionId"])

    db_session.expire_all()
    call = db_session.scalar(select(CallRequest).where(CallRequest.buyer_email == "late@example.org"))
    assert (call.status, call.cancel_reason) == (RequestStatus.CANCELLED, CancelReason.SUSPENDED)
    assert (release_hold.name, (str(call.id),), {}) in enqueued
    mail = {(row.recipient, row.template) for row in db_session.scalars(select(OutboxEmail))}
    assert ("late@example.org", "payment_released_buyer") in mail
    assert not any(template == "request_created_seller" for _, template in mail)

    # The seller, suspended, cannot accept it (nor would it matter: it is cancelled).
    seller = app.test_client()
    login(seller, profile.user)
    refused = seller.post(f"/api/requests/{call.id}/accept", headers={"X-CSRFToken": csrf_token(seller)})
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "suspended"


def test_a_suspended_seller_can_neither_accept_nor_decline_a_waiting_request(client, db_session, enqueued) -> None:  # type: ignore[no-untyped-def]
    profile = ProfileFactory()
    waiting = CallRequestFactory(transaction=TransactionFactory(seller=profile.user))
    # Suspended by some other path than the admin action (which also declines what waits).
    db_session.execute(update(User).where(User.id == profile.user_id).values(suspended_at=utcnow()))
    login(client, profile.user)
    headers = {"X-CSRFToken": csrf_token(client)}

    for action in ("accept", "decline"):
        response = client.post(f"/api/requests/{waiting.id}/{action}", headers=headers)
        assert response.status_code == 403
        assert response.get_json()["error"]["code"] == "suspended"
    db_session.refresh(waiting)
    assert waiting.status == RequestStatus.PENDING
    assert enqueued == []
