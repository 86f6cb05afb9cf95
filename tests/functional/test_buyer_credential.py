"""Issue 16, finding 1: a seller must not be able to take the buyer's place in the call.

The attack as it was reported: the seller reads the Checkout Session id in their own data
export, asks ``GET /api/requests/status`` with it, gets the buyer's ``joinUrl`` and joins, ends
and rates the call as the buyer. Here the whole purchase runs through the app (paywall, test-mode
checkout, signed webhook, task), the seller accepts, and then everything the seller can read is
searched for anything that opens the buyer's side.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid

import pytest
from sqlalchemy import select

from app.integrations.payments import sign_payload
from app.models import CallRequest, Checkout
from app.services.calls import join_token, party_for_token
from tasks.stripe_events import process_stripe_event
from tests.conftest import csrf_token, login
from tests.factories import ProfileFactory

CHECKOUT_URL = re.compile(r"/dev/checkout/(cs_test_[0-9a-f]+)$")
TOKEN_IN_URL = re.compile(r"[?&]t=([A-Za-z0-9_-]+)")


@pytest.fixture(autouse=True)
def _fresh_limits(redis, settings):  # type: ignore[no-untyped-def]
    for key in redis.scan_iter(f"LIMITS:LIMITER/chatlink:{settings.celery_queue}:*"):
        redis.delete(key)


@pytest.fixture
def seller(db_session):  # type: ignore[no-untyped-def]
    return ProfileFactory(display_name="Ada Lovelace", slug="ada", price_cents=2500)


def buy(app, buyer, enqueued) -> str:  # type: ignore[no-untyped-def]
    """The buyer's whole purchase in ``buyer``'s browser; returns the Checkout Session id."""
    form = {
        "buyer_email": "buyer@example.org",
        "note": "Engines",
        "submission_key": secrets.token_urlsafe(24),
        "csrf_token": csrf_token(buyer),
    }
    session_id = CHECKOUT_URL.search(buyer.post("/u/ada", data=form).headers["Location"]).group(1)
    buyer.post(f"/dev/checkout/{session_id}/pay", data={"csrf_token": csrf_token(buyer)})
    (event,) = [args[0] for name, args, _ in enqueued if name == "tasks.builtin_payments.deliver_builtin_webhook"]
    payload = json.dumps(event).encode()
    secret = app.extensions["settings"].stripe_webhook_secret
    webhook = app.test_client().post(
        "/api/webhooks/stripe", data=payload, headers={"Stripe-Signature": sign_payload(payload, secret)}
    )
    assert webhook.status_code == 200
    (row_id,) = [args[0] for name, args, _ in enqueued if name == "tasks.stripe_events.process_stripe_event"]
    with app.app_context():
        assert process_stripe_event(row_id) == "processed"
    return session_id


def accept(seller_client, db_session) -> CallRequest:  # type: ignore[no-untyped-def]
    (pending,) = seller_client.get("/api/requests?status=pending").get_json()["requests"]
    answer = seller_client.post(
        f"/api/requests/{pending['id']}/accept", headers={"X-CSRFToken": csrf_token(seller_client)}
    )
    assert answer.status_code == 200
    return db_session.scalars(select(CallRequest).where(CallRequest.id == uuid.UUID(pending["id"]))).one()


class TestTheSellerCannotBecomeTheBuyer:
    def test_export_status_and_pages_give_the_seller_nothing_that_opens_the_buyers_side(
        self, app, db_session, seller, enqueued
    ) -> None:
        buyer = app.test_client()
        session_id = buy(app, buyer, enqueued)
        seller_client = app.test_client()
        login(seller_client, seller.user)
        call = accept(seller_client, db_session)
        secret_key = app.extensions["settings"].secret_key
        buyer_token = join_token(secret_key, call, "buyer")

        export = seller_client.get("/account/export.json").get_data(as_text=True)
        assert session_id not in export
        # Even a seller who learns the session id elsewhere (Stripe's dashboard, a log line)
        # gets the status and no join link from it.
        status = seller_client.get(f"/api/requests/status?session_id={session_id}")
        assert status.status_code == 200
        assert status.get_json()["status"] == "accepted"
        assert status.get_json()["joinUrl"] is None
        page = seller_client.get(f"/success?session_id={session_id}").get_data(as_text=True)
        assert f"/call/{call.id}?t=" not in page

        seen = [
            export,
            status.get_data(as_text=True),
            page,
            seller_client.get("/api/requests").get_data(as_text=True),
            seller_client.get("/dashboard").get_data(as_text=True),
            seller_client.get("/requests").get_data(as_text=True),
        ]
        tokens = {token for text in seen for token in TOKEN_IN_URL.findall(text)}
        assert buyer_token not in "".join(seen)
        assert all(party_for_token(secret_key, call, token) != "buyer" for token in tokens)
        # The buyer's pages (rating, report) open only with the buyer's token.
        for token in tokens:
            rating = seller_client.post(f"/api/calls/{call.id}/rating", json={"token": token, "stars": 5})
            assert rating.status_code == 404
            joined = seller_client.post(
                "/api/video/join", json={"requestId": str(call.id), "token": token, "clientId": "seller-window-1"}
            )
            assert joined.status_code != 200 or joined.get_json().get("party", "seller") == "seller"

    def test_the_browser_that_paid_sees_its_join_link(self, app, db_session, seller, enqueued) -> None:
        buyer = app.test_client()
        session_id = buy(app, buyer, enqueued)
        seller_client = app.test_client()
        login(seller_client, seller.user)
        call = accept(seller_client, db_session)
        secret_key = app.extensions["settings"].secret_key

        join_url = buyer.get(f"/api/requests/status?session_id={session_id}").get_json()["joinUrl"]
        assert join_url is not None
        assert party_for_token(secret_key, call, TOKEN_IN_URL.search(join_url).group(1)) == "buyer"
        assert join_url in buyer.get(f"/success?session_id={session_id}").get_data(as_text=True)
        # The same id from another browser (the email link opened on a phone) shows no link.
        assert app.test_client().get(f"/api/requests/status?session_id={session_id}").get_json()["joinUrl"] is None

    def test_a_forged_or_foreign_cookie_opens_nothing(self, app, db_session, seller, enqueued) -> None:
        buyer = app.test_client()
        session_id = buy(app, buyer, enqueued)
        seller_client = app.test_client()
        login(seller_client, seller.user)
        accept(seller_client, db_session)
        (cookie,) = [c for c in buyer._cookies.values() if c.key.startswith("chatlink_checkout_")]
        attacker = app.test_client()
        attacker.set_cookie(cookie.key, secrets.token_urlsafe(32))
        assert attacker.get(f"/api/requests/status?session_id={session_id}").get_json()["joinUrl"] is None


class TestTheCheckoutCookie:
    def test_is_http_only_lax_and_only_its_hash_is_stored(self, app, client, db_session, seller) -> None:
        form = {
            "buyer_email": "buyer@example.org",
            "submission_key": secrets.token_urlsafe(24),
            "csrf_token": csrf_token(client),
        }
        response = client.post("/u/ada", data=form)
        (header,) = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("chatlink_checkout_")]
        attributes = {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}
        assert {"httponly", "samesite", "path", "max-age"} <= attributes
        assert "SameSite=Lax" in header
        assert "secure" not in attributes  # plain http in tests; Secure whenever APP_URL is https
        value = header.split(";", 1)[0].split("=", 1)[1]
        checkout = db_session.scalars(select(Checkout).where(Checkout.seller_id == seller.user_id)).one()
        assert checkout.browser_key_hash is not None
        assert value not in checkout.browser_key_hash and len(checkout.browser_key_hash) == 64

    def test_the_api_checkout_sets_it_too(self, client, db_session, seller) -> None:
        response = client.post(
            "/api/payments/checkout",
            json={"slug": "ada", "buyerEmail": "api@example.org"},
            headers={"X-CSRFToken": csrf_token(client)},
        )
        assert response.status_code == 201
        assert any(h.startswith("chatlink_checkout_") for h in response.headers.getlist("Set-Cookie"))
