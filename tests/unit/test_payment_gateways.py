"""The payment gateways: the real Stripe adapter against a local fake Stripe, and the built-in
test-mode checkout against real Redis."""

from __future__ import annotations

import json
import threading
import time

import pytest
import stripe

from app.integrations.builtin_payments import BuiltinGateway, builtin_gateway
from app.integrations.payments import CheckoutRequest, PaymentError, StripeGateway, payment_gateway, sign_payload
from tests.fakes.stripe_api import FakeStripe

METADATA = {"app": "chatlink", "env": "test", "seller_id": "seller-1", "checkout_id": "chk-1"}


def checkout_request(**changes: object) -> CheckoutRequest:
    values: dict[str, object] = {
        "seller_id": "seller-1",
        "seller_name": "Ada Lovelace",
        "product_name": "5-minute video call with Ada Lovelace",
        "checkout_id": "chk-1",
        "amount_cents": 2500,
        "currency": "usd",
        "buyer_email": "buyer@example.org",
        "capture_manually": True,
        "success_url": "http://127.0.0.1:5000/success?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://127.0.0.1:5000/cancel?checkout=chk-1",
        "expires_at": 1_900_000_000,
        "metadata": METADATA,
    }
    values.update(changes)
    return CheckoutRequest(**values)  # type: ignore[arg-type]


@pytest.fixture
def fake_stripe():  # type: ignore[no-untyped-def]
    with FakeStripe() as fake:
        yield fake


def stripe_gateway(fake: FakeStripe, retries: int = 0) -> StripeGateway:
    return StripeGateway("sk_test_fake", api_base=fake.url, timeout=5, max_network_retries=retries)


class TestStripeGateway:
    def test_create_checkout_sends_exactly_the_parameters_and_an_idempotency_key(self, fake_stripe):
        created = stripe_gateway(fake_stripe).create_checkout(checkout_request())

        assert created.session_id == "cs_test_fake_1"
        assert created.url == "https://checkout.stripe.test/c/pay/cs_test_fake_1"
        (sent,) = fake_stripe.requests
        assert (sent.method, sent.path) == ("POST", "/v1/checkout/sessions")
        assert sent.idempotency_key == "checkout:chk-1"
        expected = {
            "mode": "payment",
            "line_items[0][quantity]": "1",
            "line_items[0][price_data][currency]": "usd",
            "line_items[0][price_data][unit_amount]": "2500",
            "line_items[0][price_data][product_data][name]": "5-minute video call with Ada Lovelace",
            "customer_email": "buyer@example.org",
            "client_reference_id": "chk-1",
            "payment_intent_data[capture_method]": "manual",
            "success_url": "http://127.0.0.1:5000/success?session_id={CHECKOUT_SESSION_ID}",
            "cancel_url": "http://127.0.0.1:5000/cancel?checkout=chk-1",
            "expires_at": "1900000000",
        }
        for key, value in METADATA.items():
            expected[f"metadata[{key}]"] = value
            expected[f"payment_intent_data[metadata][{key}]"] = value
        # Exactly these: Stripe refuses unknown parameters.
        assert sent.params == expected

    def test_immediate_capture_asks_for_automatic_capture(self, fake_stripe):
        stripe_gateway(fake_stripe).create_checkout(checkout_request(capture_manually=False))
        assert fake_stripe.requests[0].params["payment_intent_data[capture_method]"] == "automatic"

    def test_retrieve_expands_the_payment_intent(self, fake_stripe):
        gateway = stripe_gateway(fake_stripe)
        session_id = gateway.create_checkout(checkout_request()).session_id
        fake_stripe.sessions[session_id]["customer_details"] = {"email": "paid@example.org"}
        fake_stripe.set_intent(session_id, "requires_capture", intent_id="pi_fake_hold")

        snapshot = gateway.retrieve_checkout(session_id)

        # The charge is expanded too: its card details say until when the hold can be captured.
        assert fake_stripe.requests[-1].query == {
            "expand[0]": "payment_intent",
            "expand[1]": "payment_intent.latest_charge",
        }
        assert snapshot.payment_intent_id == "pi_fake_hold"
        assert snapshot.payment_intent_status == "requires_capture"
        assert snapshot.status == "complete"
        assert snapshot.amount_total == 2500
        assert snapshot.customer_email == "paid@example.org"
        assert snapshot.metadata == METADATA

    def test_money_moves_carry_deterministic_idempotency_keys(self, fake_stripe):
        gateway = stripe_gateway(fake_stripe)

        assert gateway.capture("pi_1", idempotency_key="capture:req-1") == "succeeded"
        assert gateway.cancel("pi_2", idempotency_key="cancel:req-2") == "canceled"
        assert gateway.refund("pi_1", idempotency_key="refund:req-1", amount_cents=700) == "succeeded"

        capture, cancel, refund = fake_stripe.requests
        assert (capture.path, capture.idempotency_key) == ("/v1/payment_intents/pi_1/capture", "capture:req-1")
        assert (cancel.path, cancel.idempotency_key) == ("/v1/payment_intents/pi_2/cancel", "cancel:req-2")
        assert (refund.path, refund.idempotency_key) == ("/v1/refunds", "refund:req-1")
        assert refund.params == {"payment_intent": "pi_1", "amount": "700"}

    def test_a_server_error_is_retried_with_the_same_key_then_reported_transient(self, fake_stripe):
        for _ in range(2):
            fake_stripe.fail_next(500)
        with pytest.raises(PaymentError) as raised:
            stripe_gateway(fake_stripe, retries=1).capture("pi_1", idempotency_key="capture:req-1")
        assert raised.value.transient is True
        assert [r.idempotency_key for r in fake_stripe.requests] == ["capture:req-1", "capture:req-1"]

    @pytest.mark.parametrize(("status", "transient"), [(429, True), (503, True), (400, False), (402, False)])
    def test_errors_are_classified(self, fake_stripe, status, transient):
        fake_stripe.fail_next(status, code="payment_intent_unexpected_state")
        with pytest.raises(PaymentError) as raised:
            stripe_gateway(fake_stripe).cancel("pi_1", idempotency_key="cancel:req-1")
        assert raised.value.transient is transient
        if status in (400, 402):
            assert raised.value.code == "payment_intent_unexpected_state"

    def test_a_network_failure_is_transient(self):
        gateway = StripeGateway("sk_test_fake", api_base="http://127.0.0.1:9", timeout=1, max_network_retries=0)
        with pytest.raises(PaymentError) as raised:
            gateway.retrieve_checkout("cs_test_1")
        assert raised.value.transient is True

    def test_payment_intent_for_charge(self, fake_stripe):
        fake_stripe.charges["ch_1"] = "pi_9"
        assert stripe_gateway(fake_stripe).payment_intent_for_charge("ch_1") == "pi_9"

    def test_the_gateway_is_chosen_by_configuration(self, settings, redis, fake_stripe):
        assert isinstance(payment_gateway(settings, redis), BuiltinGateway)
        real = payment_gateway(settings.replace(stripe_secret_key="sk_test_x", stripe_api_base=fake_stripe.url), redis)
        assert isinstance(real, StripeGateway)


@pytest.fixture
def events() -> list[dict]:
    return []


@pytest.fixture
def builtin(settings, redis, events) -> BuiltinGateway:
    return builtin_gateway(settings, redis, notify=events.append)


class TestBuiltinGateway:
    def test_create_is_idempotent_and_the_session_looks_like_stripes(self, builtin, settings):
        first = builtin.create_checkout(checkout_request())
        again = builtin.create_checkout(checkout_request())

        assert again == first
        assert first.session_id.startswith("cs_test_")
        assert first.url == f"{settings.app_url}/dev/checkout/{first.session_id}"
        session = builtin.session(first.session_id)
        assert session["status"] == "open"
        assert session["payment_status"] == "unpaid"
        assert session["amount_total"] == 2500
        assert session["metadata"] == METADATA
        assert session["product_name"] == "5-minute video call with Ada Lovelace"

    def test_the_same_key_with_other_parameters_is_refused(self, builtin):
        builtin.create_checkout(checkout_request())
        with pytest.raises(PaymentError) as raised:
            builtin.create_checkout(checkout_request(amount_cents=9999))
        assert raised.value.code == "idempotency_key_in_use"
        assert raised.value.transient is False

    def test_pay_places_a_hold_and_announces_the_completed_session(self, builtin, events):
        session_id = builtin.create_checkout(checkout_request()).session_id

        builtin.pay(session_id)

        snapshot = builtin.retrieve_checkout(session_id)
        assert (snapshot.status, snapshot.payment_status) == ("complete", "unpaid")
        assert snapshot.payment_intent_status == "requires_capture"
        assert snapshot.customer_email == "buyer@example.org"
        (event,) = events
        assert event["type"] == "checkout.session.completed"
        assert event["id"].startswith("evt_test_")
        obj = event["data"]["object"]
        assert obj["id"] == session_id
        assert obj["metadata"] == METADATA
        assert not any(key.startswith("_") for key in obj)

    def test_immediate_capture_pays_at_once(self, builtin):
        session_id = builtin.create_checkout(checkout_request(capture_manually=False)).session_id
        builtin.pay(session_id)
        snapshot = builtin.retrieve_checkout(session_id)
        assert (snapshot.payment_status, snapshot.payment_intent_status) == ("paid", "succeeded")

    def test_a_session_is_paid_once(self, builtin, events):
        session_id = builtin.create_checkout(checkout_request()).session_id
        builtin.pay(session_id)
        with pytest.raises(PaymentError) as raised:
            builtin.pay(session_id)
        assert raised.value.code == "checkout_not_open"
        assert len(events) == 1

    def test_capture_follows_stripes_rules_and_keys(self, builtin):
        intent_id = self._held(builtin)

        assert builtin.capture(intent_id, idempotency_key="capture:r1") == "succeeded"
        # The same key answers the first result again; a new key meets the new state.
        assert builtin.capture(intent_id, idempotency_key="capture:r1") == "succeeded"
        with pytest.raises(PaymentError) as raised:
            builtin.capture(intent_id, idempotency_key="capture:other")
        assert raised.value.code == "payment_intent_unexpected_state"
        with pytest.raises(PaymentError):
            builtin.cancel(intent_id, idempotency_key="cancel:r1")

    def test_cancel_releases_a_hold(self, builtin):
        intent_id = self._held(builtin)
        assert builtin.cancel(intent_id, idempotency_key="cancel:r1") == "canceled"
        assert builtin.cancel(intent_id, idempotency_key="cancel:r1") == "canceled"
        with pytest.raises(PaymentError) as raised:
            builtin.capture(intent_id, idempotency_key="capture:r1")
        assert raised.value.code == "payment_intent_unexpected_state"

    def test_refund_needs_a_captured_payment_and_announces_charge_refunded(self, builtin, events):
        intent_id = self._held(builtin)
        with pytest.raises(PaymentError):
            builtin.refund(intent_id, idempotency_key="refund:early")
        builtin.capture(intent_id, idempotency_key="capture:r1")
        events.clear()

        assert builtin.refund(intent_id, idempotency_key="refund:r1") == "succeeded"
        assert builtin.refund(intent_id, idempotency_key="refund:r1") == "succeeded"

        (event,) = events
        assert event["type"] == "charge.refunded"
        charge = event["data"]["object"]
        assert charge["payment_intent"] == intent_id
        assert (charge["amount_refunded"], charge["refunded"]) == (2500, True)
        assert charge["metadata"] == METADATA
        assert builtin.payment_intent_for_charge(charge["id"]) == intent_id
        with pytest.raises(PaymentError) as raised:
            builtin.refund(intent_id, idempotency_key="refund:again")
        assert raised.value.code == "charge_already_refunded"

    def test_a_partial_refund_leaves_the_rest(self, builtin, events):
        intent_id = self._held(builtin)
        builtin.capture(intent_id, idempotency_key="capture:r1")
        events.clear()
        builtin.refund(intent_id, idempotency_key="refund:part", amount_cents=1000)
        assert events[-1]["data"]["object"]["refunded"] is False
        with pytest.raises(PaymentError) as raised:
            builtin.refund(intent_id, idempotency_key="refund:too-much", amount_cents=2000)
        assert raised.value.code == "amount_too_large"

    def test_concurrent_captures_with_one_key_move_the_money_once(self, builtin):
        intent_id = self._held(builtin)
        results: list[str] = []

        def capture() -> None:
            results.append(builtin.capture(intent_id, idempotency_key="capture:same"))

        threads = [threading.Thread(target=capture) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == ["succeeded"] * 10

    def test_expire_announces_once_and_closes_the_session(self, builtin, events):
        session_id = builtin.create_checkout(checkout_request()).session_id

        assert builtin.expire(session_id)["status"] == "expired"
        assert builtin.expire(session_id)["status"] == "expired"

        assert [event["type"] for event in events] == ["checkout.session.expired"]
        with pytest.raises(PaymentError):
            builtin.pay(session_id)

    def test_overdue_sessions_expire_by_themselves(self, builtin, events):
        due = builtin.create_checkout(checkout_request(expires_at=int(time.time()) - 1)).session_id
        later = builtin.create_checkout(checkout_request(checkout_id="chk-2")).session_id

        assert builtin.expire_overdue() == 1
        assert builtin.retrieve_checkout(due).status == "expired"
        assert builtin.retrieve_checkout(later).status == "open"
        assert builtin.expire_overdue() == 0
        assert len(events) == 1

    def test_an_unknown_session_is_a_permanent_error(self, builtin):
        with pytest.raises(PaymentError) as raised:
            builtin.retrieve_checkout("cs_test_nope")
        assert (raised.value.code, raised.value.transient) == ("resource_missing", False)

    @staticmethod
    def _held(builtin: BuiltinGateway) -> str:
        session_id = builtin.create_checkout(checkout_request()).session_id
        builtin.pay(session_id)
        intent_id = builtin.retrieve_checkout(session_id).payment_intent_id
        assert intent_id is not None
        return intent_id


def test_sign_payload_is_what_stripe_verifies():
    payload = json.dumps({"id": "evt_1", "object": "event"}).encode()
    header = sign_payload(payload, "whsec_test")
    event = stripe.Webhook.construct_event(payload, header, "whsec_test")
    assert event.id == "evt_1"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, header, "whsec_other")
