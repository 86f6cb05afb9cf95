"""Checkout through the Flask client: the paywall form, the JSON API, the built-in test-mode
checkout page, the buyer's status page and the cancel page."""

from __future__ import annotations

import json
import re
import secrets
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.db import utcnow
from app.integrations.builtin_payments import builtin_gateway
from app.integrations.payments import CheckoutRequest, sign_payload
from app.models import Block, CallRequest, CancelReason, Checkout, Profile, RequestStatus
from app.services.buyer_status import hash_browser_key
from app.web.payments import _browser_key_cookie
from tasks.builtin_payments import expire_builtin_checkouts
from tasks.maintenance import SWEEP_STEPS
from tasks.stripe_events import process_stripe_event
from tests.conftest import csrf_token
from tests.factories import CallRequestFactory, ProfileFactory, TransactionFactory, UserFactory
from tests.fakes.stripe_api import FakeStripe

BROWSER_KEY = "the-key-of-the-browser-that-paid"
SESSION_URL = re.compile(r"^http://127\.0\.0\.1:5000/dev/checkout/(cs_test_[0-9a-f]+)$")


@pytest.fixture(autouse=True)
def _fresh_redis(redis, settings):  # type: ignore[no-untyped-def]
    """This run's rate-limit counters and built-in gateway state start empty for each test
    (Flask-Limiter keeps its counters under its own ``LIMITS:LIMITER/`` prefix)."""
    for key in redis.scan_iter(f"LIMITS:LIMITER/chatlink:{settings.celery_queue}:*"):
        redis.delete(key)
    yield


@pytest.fixture
def seller(db_session):  # type: ignore[no-untyped-def]
    return ProfileFactory(display_name="Grace Hopper", slug="grace", price_cents=2500)


def post_paywall(client, slug: str = "grace", **fields: str):  # type: ignore[no-untyped-def]
    data = {
        "buyer_email": "Buyer@Example.org",
        "note": "About COBOL",
        "submission_key": secrets.token_urlsafe(24),
    }
    data.update(fields)
    data.setdefault("csrf_token", csrf_token(client))
    return client.post(f"/u/{slug}", data=data)


def checkouts(db_session) -> list[Checkout]:  # type: ignore[no-untyped-def]
    """The checkouts of this module's sellers (rows another suite left behind do not count)."""
    ours = select(Profile.user_id).where(Profile.slug.in_(("grace", "away", "paused-one", "racer")))
    return list(db_session.scalars(select(Checkout).where(Checkout.seller_id.in_(ours))))


class TestPaywallForm:
    def test_redirects_to_a_new_checkout_with_the_note_kept_here(self, app, client, db_session, seller, redis):
        response = post_paywall(client)

        assert response.status_code == 303
        match = SESSION_URL.match(response.headers["Location"])
        assert match
        (checkout,) = checkouts(db_session)
        assert checkout.stripe_checkout_session_id == match.group(1)
        assert (checkout.buyer_email, checkout.note, checkout.amount_cents) == (
            "buyer@example.org",
            "About COBOL",
            2500,
        )
        assert timedelta(minutes=30) < checkout.expires_at - utcnow() <= timedelta(minutes=31)
        session = builtin_gateway(app.extensions["settings"], redis).session(match.group(1))
        # Ids only: the note never goes to the payment provider.
        assert session["metadata"] == {
            "app": "chatlink",
            "env": "test",
            "seller_id": str(seller.user_id),
            "checkout_id": str(checkout.id),
        }
        assert "About COBOL" not in str(session)

    def test_a_double_submit_reuses_the_first_checkout(self, client, db_session, seller):
        key = secrets.token_urlsafe(24)
        first = post_paywall(client, submission_key=key)
        second = post_paywall(client, submission_key=key)
        assert first.headers["Location"] == second.headers["Location"]
        assert len(checkouts(db_session)) == 1

    def test_a_bad_email_shows_the_form_again(self, client, db_session, seller):
        response = post_paywall(client, buyer_email="not-an-email")
        assert response.status_code == 422
        assert "Enter an email address like name@example.com." in response.get_data(as_text=True)
        assert checkouts(db_session) == []

    @pytest.mark.parametrize(
        ("user_values", "paused"),
        [({"email_verified_at": None}, False), ({"suspended_at": utcnow()}, False), ({}, True)],
    )
    def test_a_seller_not_taking_calls_is_refused(self, client, db_session, user_values, paused):
        ProfileFactory(slug="away", user=UserFactory(**user_values), paused=paused)
        response = post_paywall(client, slug="away")
        assert response.status_code == 409
        assert "not taking calls right now" in response.get_data(as_text=True)
        assert checkouts(db_session) == []

    def test_a_blocked_email_is_refused_kindly(self, client, db_session, seller):
        db_session.add(Block(seller_id=seller.user_id, buyer_email="buyer@example.org"))
        db_session.flush()
        response = post_paywall(client, buyer_email="BUYER@example.org")
        assert response.status_code == 403
        assert "Grace Hopper is not taking requests from this email address" in response.get_data(as_text=True)
        assert checkouts(db_session) == []

    def test_an_unknown_seller_is_a_404(self, client, db_session):
        assert post_paywall(client, slug="nobody-here").status_code == 404

    def test_the_form_needs_its_csrf_token(self, client, db_session, seller):
        response = post_paywall(client, csrf_token="")
        assert response.status_code == 400
        assert checkouts(db_session) == []


class TestCheckoutApi:
    def post(self, client, body, **headers):  # type: ignore[no-untyped-def]
        return client.post("/api/payments/checkout", json=body, headers={"X-CSRFToken": csrf_token(client), **headers})

    def test_creates_a_checkout(self, client, db_session, seller):
        response = self.post(client, {"slug": "grace", "buyerEmail": "api@example.org", "note": "Hi"})
        assert response.status_code == 201
        body = response.get_json()
        assert SESSION_URL.match(body["checkoutUrl"]).group(1) == body["sessionId"]
        (checkout,) = checkouts(db_session)
        assert (checkout.buyer_email, checkout.note) == ("api@example.org", "Hi")

    def test_the_same_idempotency_key_returns_the_same_session(self, client, db_session, seller):
        key = "client-key-0123456789"
        body = {"slug": "grace", "buyerEmail": "api@example.org"}
        first = self.post(client, body, **{"Idempotency-Key": key}).get_json()
        second = self.post(client, body, **{"Idempotency-Key": key}).get_json()
        assert first == second
        assert len(checkouts(db_session)) == 1

    def test_invalid_fields_are_named(self, client, db_session, seller):
        response = self.post(client, {"slug": "", "buyerEmail": "nope", "note": "x" * 281})
        assert response.status_code == 422
        assert set(response.get_json()["error"]["fields"]) == {"slug", "buyerEmail", "note"}

    def test_refusals_have_their_status_and_code(self, client, db_session, seller):
        db_session.add(Block(seller_id=seller.user_id, buyer_email="blocked@example.org"))
        ProfileFactory(slug="paused-one", paused=True)
        db_session.flush()
        cases = [
            ({"slug": "grace", "buyerEmail": "blocked@example.org"}, 403, "blocked"),
            ({"slug": "paused-one", "buyerEmail": "a@example.org"}, 409, "seller_unavailable"),
            ({"slug": "nobody", "buyerEmail": "a@example.org"}, 404, "not_found"),
        ]
        for body, status, code in cases:
            response = self.post(client, body)
            assert (response.status_code, response.get_json()["error"]["code"]) == (status, code)
        assert checkouts(db_session) == []

    def test_needs_the_csrf_header(self, client, db_session, seller):
        response = client.post("/api/payments/checkout", json={"slug": "grace", "buyerEmail": "a@example.org"})
        assert response.status_code == 400

    def test_not_json_is_a_400(self, client, db_session, seller):
        response = client.post("/api/payments/checkout", data="x", headers={"X-CSRFToken": csrf_token(client)})
        assert response.status_code == 400


class TestRealStripeAdapter:
    """An app built with STRIPE_SECRET_KEY and STRIPE_API_BASE pointing at a local fake Stripe.
    ``db_session`` comes before ``make_app`` so the extra app shares the test's transaction."""

    def test_the_paywall_opens_a_stripe_session_with_the_exact_parameters(self, db_session, make_app, settings):
        ProfileFactory(display_name="Grace Hopper", slug="grace", price_cents=2500)
        with FakeStripe() as fake:
            app = make_app(settings.replace(stripe_secret_key="sk_test_fake", stripe_api_base=fake.url))
            client = app.test_client()
            response = post_paywall(client)

            assert response.status_code == 303
            assert response.headers["Location"] == "https://checkout.stripe.test/c/pay/cs_test_fake_1"
            (checkout,) = checkouts(db_session)
            (sent,) = fake.requests
            assert sent.idempotency_key == f"checkout:{checkout.id}"
            params = sent.params
            assert params["line_items[0][price_data][unit_amount]"] == "2500"
            assert params["line_items[0][price_data][currency]"] == "usd"
            assert params["payment_intent_data[capture_method]"] == "manual"
            for prefix in ("metadata", "payment_intent_data[metadata]"):
                assert params[f"{prefix}[app]"] == "chatlink"
                assert params[f"{prefix}[env]"] == "test"
                assert params[f"{prefix}[checkout_id]"] == str(checkout.id)
            assert params["success_url"] == "http://127.0.0.1:5000/success?session_id={CHECKOUT_SESSION_ID}"
            assert params["cancel_url"] == f"http://127.0.0.1:5000/cancel?checkout={checkout.id}"
            assert int(params["expires_at"]) == int(checkout.expires_at.timestamp())
            assert "form-action 'self' https://checkout.stripe.com" in response.headers["Content-Security-Policy"]

    def test_a_gateway_failure_keeps_nothing_and_says_try_again(self, db_session, make_app, settings):
        ProfileFactory(slug="grace")
        with FakeStripe() as fake:
            app = make_app(settings.replace(stripe_secret_key="sk_test_fake", stripe_api_base=fake.url))
            for _ in range(3):  # the library's own retries too
                fake.fail_next(500)
            response = post_paywall(app.test_client())
        assert response.status_code == 503
        assert "We could not start the payment" in response.get_data(as_text=True)
        assert checkouts(db_session) == []

    def test_the_test_mode_checkout_does_not_exist_with_real_stripe(self, db_session, make_app, settings):
        app = make_app(settings.replace(stripe_secret_key="sk_test_fake"))
        assert app.test_client().get("/dev/checkout/cs_test_x").status_code == 404


class TestTestModeCheckout:
    def open(self, client) -> str:  # type: ignore[no-untyped-def]
        return SESSION_URL.match(post_paywall(client).headers["Location"]).group(1)

    def test_the_product_name_says_the_call_length_of_the_setting(self, app, client, db_session, seller, monkeypatch):
        settings = app.extensions["settings"]
        monkeypatch.setitem(app.extensions, "settings", settings.replace(call_duration_seconds=90))
        html = client.get(f"/dev/checkout/{self.open(client)}").get_data(as_text=True)
        assert "90-second video call with Grace Hopper" in html

    def test_the_page_shows_seller_price_email_and_test_mode(self, client, db_session, seller):
        html = client.get(f"/dev/checkout/{self.open(client)}").get_data(as_text=True)
        assert "Test mode" in html
        assert "no real money" in html
        assert "5-minute video call with Grace Hopper" in html
        assert "$25" in html
        assert "buyer@example.org" in html
        assert "<script" not in html

    def test_pay_sends_a_signed_completed_event_and_returns_to_the_status_page(
        self, client, db_session, seller, enqueued
    ):
        session_id = self.open(client)
        response = client.post(f"/dev/checkout/{session_id}/pay", data={"csrf_token": csrf_token(client)})

        assert response.status_code == 303
        assert response.headers["Location"] == f"http://127.0.0.1:5000/success?session_id={session_id}"
        ((_name, (event,), _),) = [
            item for item in enqueued if item[0] == "tasks.builtin_payments.deliver_builtin_webhook"
        ]
        assert event["type"] == "checkout.session.completed"
        assert event["data"]["object"]["id"] == session_id
        # Paying twice is refused.
        again = client.post(f"/dev/checkout/{session_id}/pay", data={"csrf_token": csrf_token(client)})
        assert again.status_code == 409

    def test_cancel_expires_the_session_and_returns_to_the_cancel_page(self, client, db_session, seller, enqueued):
        session_id = self.open(client)
        response = client.post(f"/dev/checkout/{session_id}/cancel", data={"csrf_token": csrf_token(client)})
        (checkout,) = checkouts(db_session)
        assert response.headers["Location"] == f"http://127.0.0.1:5000/cancel?checkout={checkout.id}"
        events = [args[0] for name, args, _ in enqueued if name == "tasks.builtin_payments.deliver_builtin_webhook"]
        assert [event["type"] for event in events] == ["checkout.session.expired"]

    def test_an_unknown_session_is_a_404(self, client, db_session):
        assert client.get("/dev/checkout/cs_test_nothing").status_code == 404


class TestBuyerStatus:
    def paid_request(self, db_session, seller, **request_values):  # type: ignore[no-untyped-def]
        transaction = TransactionFactory(seller=seller.user, stripe_checkout_session_id="cs_test_status")
        db_session.add(
            Checkout(
                seller_id=seller.user_id,
                buyer_email=transaction.buyer_email,
                amount_cents=2500,
                currency="usd",
                submission_key=secrets.token_urlsafe(24),
                stripe_checkout_session_id="cs_test_status",
                browser_key_hash=hash_browser_key(BROWSER_KEY),
                expires_at=utcnow(),
            )
        )
        db_session.flush()
        return CallRequestFactory(transaction=transaction, **request_values)

    def test_processing_until_the_webhook_created_the_request(self, client, db_session, seller):
        transaction = TransactionFactory(seller=seller.user)
        db_session.add(
            Checkout(
                seller_id=seller.user_id,
                buyer_email="b@example.org",
                amount_cents=2500,
                currency="usd",
                submission_key=secrets.token_urlsafe(24),
                stripe_checkout_session_id="cs_test_waiting",
                expires_at=utcnow(),
            )
        )
        db_session.flush()
        assert transaction.stripe_checkout_session_id != "cs_test_waiting"

        body = client.get("/api/requests/status?session_id=cs_test_waiting").get_json()
        assert body == {
            "status": "processing",
            "requestId": None,
            "sellerName": "Grace Hopper",
            "expiresAt": None,
            "cancelReason": None,
            "joinUrl": None,
            "joinDeadline": None,
            "canCancel": False,
            "proposedStarts": [],
            "scheduledStart": None,
            "outcome": None,
            "problemUrl": None,
        }
        html = client.get("/success?session_id=cs_test_waiting").get_data(as_text=True)
        assert "Confirming your payment" in html
        assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in html
        assert "/static/js/live.js" in html and 'data-live-url="/api/live/checkout?session_id=cs_test_waiting"' in html
        assert "<script>" not in html and "style=" not in html

    def test_pending_shows_the_seller_and_the_deadline(self, client, db_session, seller):
        request = self.paid_request(db_session, seller)
        body = client.get("/api/requests/status?session_id=cs_test_status").get_json()
        assert body["status"] == "pending"
        assert body["requestId"] == str(request.id)
        assert body["expiresAt"].endswith("Z")
        html = client.get("/success?session_id=cs_test_status").get_data(as_text=True)
        assert "Waiting for Grace Hopper" in html
        assert "You are charged only if Grace Hopper accepts" in html

    @pytest.mark.parametrize(
        ("values", "status", "text"),
        [
            ({"status": RequestStatus.DECLINED}, "declined", "Your card was not charged"),
            (
                {"status": RequestStatus.CANCELLED, "cancel_reason": CancelReason.EXPIRED},
                "cancelled",
                "Grace Hopper did not answer in time.",
            ),
            ({"status": RequestStatus.ACCEPTED}, "accepted", "Grace Hopper accepted: join the call"),
        ],
    )
    def test_the_outcome_is_told(self, client, db_session, seller, values, status, text):
        self.paid_request(db_session, seller, **values)
        assert client.get("/api/requests/status?session_id=cs_test_status").get_json()["status"] == status
        html = client.get("/success?session_id=cs_test_status").get_data(as_text=True)
        assert text in html
        visible = re.search(rf'<div data-state="{status}">(.*?)</div>', html, re.S)
        assert visible and text in visible.group(1)
        if status in ("declined", "cancelled"):
            assert 'http-equiv="refresh"' not in html
            assert 'href="/u/grace"' in html

    def test_an_accepted_request_carries_the_buyers_join_link(self, app, client, db_session, seller):
        from app.services.calls import party_for_token

        request = self.paid_request(
            db_session, seller, status=RequestStatus.ACCEPTED, accepted_at=utcnow(), join_key="k" * 43
        )
        # The browser that paid holds the key (tests/functional/test_buyer_credential.py has the rest).
        client.set_cookie(_browser_key_cookie("cs_test_status"), BROWSER_KEY)
        body = client.get("/api/requests/status?session_id=cs_test_status").get_json()
        settings = app.extensions["settings"]
        assert body["joinUrl"].startswith(f"{settings.app_url}/call/{request.id}?t=")
        token = body["joinUrl"].split("?t=", 1)[1]
        assert party_for_token(settings.secret_key, request, token) == "buyer"
        html = client.get("/success?session_id=cs_test_status").get_data(as_text=True)
        assert f"/call/{request.id}?t={token}" in html

    def test_no_join_link_before_acceptance(self, client, db_session, seller):
        self.paid_request(db_session, seller)
        assert client.get("/api/requests/status?session_id=cs_test_status").get_json()["joinUrl"] is None

    def test_unknown_or_missing_session(self, client, db_session):
        assert client.get("/api/requests/status?session_id=cs_nope").status_code == 404
        assert client.get("/api/requests/status").status_code == 400
        assert client.get("/success?session_id=cs_nope").status_code == 404


class TestCancelPage:
    def test_links_back_to_the_paywall(self, client, db_session, seller):
        SESSION_URL.match(post_paywall(client).headers["Location"])
        (checkout,) = checkouts(db_session)
        html = client.get(f"/cancel?checkout={checkout.id}").get_data(as_text=True)
        assert "Checkout cancelled" in html
        assert 'href="/u/grace"' in html

    def test_without_a_checkout_it_still_answers(self, client, db_session):
        response = client.get("/cancel?checkout=garbage")
        assert response.status_code == 200
        assert "Checkout cancelled" in response.get_data(as_text=True)


def test_the_whole_test_mode_flow_reaches_a_pending_request(client, db_session, seller, enqueued):
    """Paywall → test checkout → signed webhook → task → the status page says pending."""

    session_id = SESSION_URL.match(post_paywall(client).headers["Location"]).group(1)
    client.post(f"/dev/checkout/{session_id}/pay", data={"csrf_token": csrf_token(client)})
    (event,) = [args[0] for name, args, _ in enqueued if name == "tasks.builtin_payments.deliver_builtin_webhook"]

    payload = json.dumps(event, indent=2).encode()
    secret = client.application.extensions["settings"].stripe_webhook_secret
    response = client.post(
        "/api/webhooks/stripe", data=payload, headers={"Stripe-Signature": sign_payload(payload, secret)}
    )
    assert response.status_code == 200
    (row_id,) = [args[0] for name, args, _ in enqueued if name == "tasks.stripe_events.process_stripe_event"]
    with client.application.app_context():
        assert process_stripe_event(row_id) == "processed"

    body = client.get(f"/api/requests/status?session_id={session_id}").get_json()
    assert body["status"] == "pending"
    (request,) = db_session.scalars(select(CallRequest).where(CallRequest.seller_id == seller.user_id))
    assert str(request.id) == body["requestId"]
    assert (request.note, request.buyer_email) == ("About COBOL", "buyer@example.org")


def test_the_sweep_expires_overdue_test_mode_sessions(app, db_session, redis, enqueued):
    settings = app.extensions["settings"]
    request = CheckoutRequest(
        seller_id="s",
        seller_name="S",
        product_name="5-minute video call with S",
        checkout_id="overdue",
        amount_cents=1000,
        currency="usd",
        buyer_email="b@example.org",
        capture_manually=True,
        success_url="http://x/success",
        cancel_url="http://x/cancel",
        expires_at=int(utcnow().timestamp()) - 1,
        metadata={},
    )
    session_id = builtin_gateway(settings, redis).create_checkout(request).session_id

    with app.app_context():
        assert expire_builtin_checkouts(db_session, utcnow(), settings) == {"builtin_checkouts_expired": 1}

    (event,) = [args[0] for name, args, _ in enqueued if name == "tasks.builtin_payments.deliver_builtin_webhook"]
    assert (event["type"], event["data"]["object"]["id"]) == ("checkout.session.expired", session_id)
    assert expire_builtin_checkouts in SWEEP_STEPS
    assert expire_builtin_checkouts(db_session, utcnow(), settings.replace(stripe_secret_key="sk_x")) == {}


def test_a_double_submit_racing_itself_opens_one_session(app, committed_db):
    """Two tabs (or a double click) posting the same form at the same instant, with real commits."""
    ProfileFactory(slug="racer", price_cents=1000)
    committed_db.commit()
    key = secrets.token_urlsafe(24)
    clients = [app.test_client() for _ in range(5)]
    tokens = [csrf_token(client) for client in clients]
    barrier = threading.Barrier(len(clients))
    locations: list[str] = []

    def submit(index: int) -> None:
        barrier.wait()
        response = post_paywall(clients[index], slug="racer", submission_key=key, csrf_token=tokens[index])
        locations.append(response.headers.get("Location", str(response.status_code)))

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(locations) == len(clients)
    assert len(set(locations)) == 1 and SESSION_URL.match(locations[0])
    committed_db.expire_all()
    assert len(checkouts(committed_db)) == 1
