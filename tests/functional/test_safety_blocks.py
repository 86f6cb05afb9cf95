"""The seller's block list through the Flask client, and the block enforced end to end at all
three points: the paywall form, the checkout API and the webhook."""

from __future__ import annotations

import json
import secrets

from sqlalchemy import select

from app.integrations.builtin_payments import builtin_gateway
from app.integrations.payments import sign_payload
from app.models import Block, CallRequest, CancelReason, EventLog, RequestStatus, StripeEvent
from tasks.stripe_events import process_stripe_event
from tests.conftest import csrf_token, login
from tests.factories import CallRequestFactory, ProfileFactory, TransactionFactory
from tests.functional.test_profile_page import assert_no_inline_code
from tests.trust_support import fresh_rate_limits, hidden_value, page_csrf  # noqa: F401 (fresh_rate_limits is autouse)


def blocked_emails(session) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(session.scalars(select(Block.buyer_email)))


class TestBlocksPage:
    def test_needs_a_login(self, client) -> None:
        response = client.get("/blocks")
        assert response.status_code == 302 and "/login" in response.headers["Location"]
        assert client.post("/blocks", data={"email": "x@example.org"}).status_code in (302, 400)

    def test_block_list_and_unblock(self, client, db_session) -> None:
        seller = ProfileFactory().user
        login(client, seller)
        page = client.get("/blocks")
        html = page.get_data(as_text=True)
        assert page.status_code == 200 and 'id="no-blocks"' in html
        assert page.headers["Cache-Control"] == "no-store"
        assert_no_inline_code(html)

        response = client.post("/blocks", data={"csrf_token": page_csrf(html), "email": "Pest@Example.org"})
        assert response.status_code == 303 and response.headers["Location"] == "/blocks"
        assert blocked_emails(db_session) == ["pest@example.org"]
        html = client.get("/blocks").get_data(as_text=True)
        assert "pest@example.org is blocked" in html and "Unblock" in html

        block = db_session.scalar(select(Block))
        response = client.post(f"/blocks/{block.id}/delete", data={"csrf_token": page_csrf(html)})
        assert response.status_code == 303
        assert blocked_emails(db_session) == []
        assert "Unblocked." in client.get("/blocks").get_data(as_text=True)

    def test_a_bad_address_shows_the_form_again(self, client, db_session) -> None:
        login(client, ProfileFactory().user)
        token = page_csrf(client.get("/blocks").get_data(as_text=True))
        response = client.post("/blocks", data={"csrf_token": token, "email": "nope"})
        assert response.status_code == 422
        assert "name@example.com" in response.get_data(as_text=True)
        assert blocked_emails(db_session) == []

    def test_without_a_csrf_token_nothing_happens(self, client, db_session) -> None:
        login(client, ProfileFactory().user)
        response = client.post("/blocks", data={"email": "pest@example.org"})
        assert response.status_code in (400, 422)
        assert blocked_emails(db_session) == []

    def test_block_from_a_pending_request_cancels_it_and_goes_back(self, client, db_session, enqueued) -> None:
        seller = ProfileFactory().user
        request = CallRequestFactory(transaction=TransactionFactory(seller=seller, buyer_email="rude@example.org"))
        login(client, seller)
        response = client.post(
            f"/requests/{request.id}/block", data={"csrf_token": csrf_token(client), "back": "/requests?status=all"}
        )
        assert response.status_code == 303 and response.headers["Location"] == "/requests?status=all"
        assert blocked_emails(db_session) == ["rude@example.org"]
        db_session.expire_all()
        call = db_session.get(CallRequest, request.id)
        assert (call.status, call.cancel_reason) == (RequestStatus.CANCELLED, CancelReason.BLOCKED)
        assert "tasks.request_payments.release_hold" in enqueued.names()

    def test_an_outside_back_link_is_not_followed(self, client, db_session) -> None:
        seller = ProfileFactory().user
        request = CallRequestFactory(transaction=TransactionFactory(seller=seller))
        login(client, seller)
        response = client.post(
            f"/requests/{request.id}/block", data={"csrf_token": csrf_token(client), "back": "https://evil.test/"}
        )
        assert response.headers["Location"] == "/blocks"

    def test_another_sellers_request_is_a_404(self, client, db_session) -> None:
        request = CallRequestFactory()
        login(client, ProfileFactory().user)
        response = client.post(f"/requests/{request.id}/block", data={"csrf_token": csrf_token(client)})
        assert response.status_code == 404
        assert blocked_emails(db_session) == []


class TestBlocksApi:
    def test_list_block_and_unblock(self, client, db_session) -> None:
        seller = ProfileFactory().user
        login(client, seller)
        headers = {"X-CSRFToken": csrf_token(client)}

        created = client.post("/api/blocks", json={"email": "Pest@example.org"}, headers=headers)
        assert created.status_code == 201
        block = created.get_json()["block"]
        assert block["buyerEmail"] == "pest@example.org" and created.get_json()["cancelledRequestIds"] == []
        again = client.post("/api/blocks", json={"email": "pest@example.org"}, headers=headers)
        assert again.status_code == 200 and again.get_json()["block"]["id"] == block["id"]

        listed = client.get("/api/blocks").get_json()["blocks"]
        assert [b["id"] for b in listed] == [block["id"]]

        assert client.delete(f"/api/blocks/{block['id']}", headers=headers).status_code == 204
        assert client.delete(f"/api/blocks/{block['id']}", headers=headers).status_code == 404
        assert client.get("/api/blocks").get_json() == {"blocks": []}

    def test_errors(self, client, db_session) -> None:
        assert client.get("/api/blocks").status_code == 401
        login(client, ProfileFactory().user)
        headers = {"X-CSRFToken": csrf_token(client)}
        assert client.post("/api/blocks", json={"email": "x@example.org"}).status_code == 400  # no CSRF token
        bad = client.post("/api/blocks", json={"email": "nope"}, headers=headers)
        assert bad.status_code == 422 and bad.get_json()["error"]["fields"]["email"]
        assert client.post("/api/blocks", json=["x"], headers=headers).status_code == 400

    def test_block_from_a_request(self, client, db_session) -> None:
        seller = ProfileFactory().user
        request = CallRequestFactory(transaction=TransactionFactory(seller=seller, buyer_email="rude@example.org"))
        login(client, seller)
        response = client.post(f"/api/requests/{request.id}/block", headers={"X-CSRFToken": csrf_token(client)})
        assert response.status_code == 201
        assert response.get_json()["cancelledRequestIds"] == [str(request.id)]


class TestBlockEnforcedAtAllThreePoints:
    """The seller blocks on their page; the buyer is then refused on the paywall form, on the
    checkout API, and a payment already under way is cancelled by the webhook."""

    def test_end_to_end(self, app, client, db_session, settings, redis, enqueued) -> None:
        profile = ProfileFactory(slug="grace", display_name="Grace")
        seller_client = app.test_client()
        login(seller_client, profile.user)

        # A checkout opened before the block: its payment arrives after it.
        early = client.post(
            "/api/payments/checkout",
            json={"slug": "grace", "buyerEmail": "Late@Example.org"},
            headers={"X-CSRFToken": csrf_token(client)},
        )
        assert early.status_code == 201
        seller_headers = {"X-CSRFToken": csrf_token(seller_client)}
        for email in ("pest@example.org", "late@example.org"):
            assert seller_client.post("/api/blocks", json={"email": email}, headers=seller_headers).status_code == 201

        # 1. The paywall form.
        page = client.get("/u/grace").get_data(as_text=True)
        key = hidden_value(page, "submission_key")
        form = {"csrf_token": page_csrf(page), "submission_key": key, "buyer_email": "PEST@example.org", "note": ""}
        refused = client.post("/u/grace", data=form)
        assert refused.status_code == 403
        assert "not taking requests from this email address" in refused.get_data(as_text=True)

        # 2. The checkout API.
        api = client.post(
            "/api/payments/checkout",
            json={"slug": "grace", "buyerEmail": "pest@example.org"},
            headers={"X-CSRFToken": csrf_token(client)},
        )
        assert (api.status_code, api.get_json()["error"]["code"]) == (403, "blocked")

        # 3. The webhook: the early buyer pays now, and the signed event reaches the app.
        gateway = builtin_gateway(settings, redis, notify=lambda event: None)
        paid = gateway.pay(early.get_json()["sessionId"])
        event = {
            "id": f"evt_{secrets.token_hex(12)}",
            "object": "event",
            "type": "checkout.session.completed",
            "livemode": False,
            "data": {"object": paid},
        }
        payload = json.dumps(event).encode()
        signature = sign_payload(payload, settings.stripe_webhook_secret)
        hook = client.post(
            "/api/webhooks/stripe",
            data=payload,
            headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
        )
        assert hook.status_code == 200
        row_id = next(args[0] for name, args, _ in enqueued if name == "tasks.stripe_events.process_stripe_event")
        with app.app_context():
            process_stripe_event(row_id)
        db_session.expire_all()
        call = db_session.scalar(select(CallRequest).where(CallRequest.buyer_email == "late@example.org"))
        assert (call.status, call.cancel_reason) == (RequestStatus.CANCELLED, CancelReason.BLOCKED)
        assert any(
            args == (str(call.id),) for name, args, _ in enqueued if name == "tasks.request_payments.release_hold"
        )
        assert db_session.scalar(select(StripeEvent.status)).value == "processed"
        # The audit trail never names the blocked address.
        payloads = " ".join(json.dumps(e.payload) for e in db_session.scalars(select(EventLog)))
        assert "pest@example.org" not in payloads
