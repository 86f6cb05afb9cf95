"""The money tasks after a decision, run for real: the built-in test-mode checkout (in Redis) and
stripe-python against a local fake Stripe, both through the task entry points."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from app.db import utcnow
from app.integrations.builtin_payments import BuiltinGateway, builtin_gateway
from app.integrations.payments import CheckoutRequest
from app.models import CallRequest, CancelReason, OutboxEmail, PaymentState, RequestStatus, Transaction
from tasks.maintenance import sweep
from tasks.request_payments import capture_accepted, release_hold
from tests.conftest import csrf_token, login
from tests.factories import CallRequestFactory, ProfileFactory
from tests.fakes.stripe_api import FakeStripe

PROVISION = "tasks.calls.provision_room"
RELEASE = "tasks.request_payments.release_hold"


@pytest.fixture
def seller(db_session):  # type: ignore[no-untyped-def]
    return ProfileFactory(display_name="Ada").user


@pytest.fixture
def checkout(settings, redis) -> BuiltinGateway:  # type: ignore[no-untyped-def]
    """The built-in gateway the tasks will use (same Redis namespace), without webhook events."""
    return builtin_gateway(settings, redis, notify=lambda event: None)


def paid_request(gateway: BuiltinGateway, seller, *, manual: bool = True) -> CallRequest:  # type: ignore[no-untyped-def]
    created = gateway.create_checkout(
        CheckoutRequest(
            seller_id=str(seller.id),
            seller_name="Ada",
            product_name="5-minute video call with Ada",
            checkout_id=str(uuid.uuid4()),
            amount_cents=1000,
            currency="usd",
            buyer_email="buyer@example.org",
            capture_manually=manual,
            success_url="http://127.0.0.1:5000/success?session_id={CHECKOUT_SESSION_ID}",
            cancel_url="http://127.0.0.1:5000/cancel",
            expires_at=int(time.time()) + 1800,
        )
    )
    gateway.pay(created.session_id)
    paid = gateway.retrieve_checkout(created.session_id)
    return CallRequestFactory(
        transaction__seller=seller,
        transaction__stripe_checkout_session_id=paid.session_id,
        transaction__stripe_payment_intent_id=paid.payment_intent_id,
        transaction__payment_state=PaymentState.HELD if manual else PaymentState.CAPTURED,
    )


def intent_status(gateway: BuiltinGateway, call_request: CallRequest) -> str | None:
    return gateway.retrieve_checkout(call_request.transaction.stripe_checkout_session_id).payment_intent_status


def payment_state(db_session, call_request: CallRequest) -> PaymentState:  # type: ignore[no-untyped-def]
    db_session.expire_all()
    return db_session.get(Transaction, call_request.transaction_id).payment_state


def decide(client, call_request: CallRequest, action: str) -> None:  # type: ignore[no-untyped-def]
    response = client.post(f"/api/requests/{call_request.id}/{action}", headers={"X-CSRFToken": csrf_token(client)})
    assert response.status_code == 200, response.get_json()


class TestWithTheBuiltinCheckout:
    def test_accept_captures_the_hold_then_asks_for_the_room(
        self, app, client, seller, db_session, checkout, enqueued
    ) -> None:  # type: ignore[no-untyped-def]
        call_request = paid_request(checkout, seller)
        login(client, seller)
        decide(client, call_request, "accept")

        with app.app_context():
            assert capture_accepted(str(call_request.id)) == "captured"

        assert intent_status(checkout, call_request) == "succeeded"
        assert payment_state(db_session, call_request) is PaymentState.CAPTURED
        assert (PROVISION, (str(call_request.id),), {}) in enqueued

    def test_decline_releases_the_hold_once(self, app, client, seller, db_session, checkout) -> None:  # type: ignore[no-untyped-def]
        call_request = paid_request(checkout, seller)
        login(client, seller)
        decide(client, call_request, "decline")

        with app.app_context():
            assert release_hold(str(call_request.id)) == "voided"
            assert release_hold(str(call_request.id)) == "unchanged"

        assert intent_status(checkout, call_request) == "canceled"
        assert payment_state(db_session, call_request) is PaymentState.VOIDED

    def test_decline_under_immediate_capture_refunds(self, app, client, seller, db_session, checkout) -> None:  # type: ignore[no-untyped-def]
        call_request = paid_request(checkout, seller, manual=False)
        login(client, seller)
        decide(client, call_request, "decline")

        with app.app_context():
            assert release_hold(str(call_request.id)) == "refunded"
            assert release_hold(str(call_request.id)) == "unchanged"

        db_session.expire_all()
        transaction = db_session.get(Transaction, call_request.transaction_id)
        assert (transaction.payment_state, transaction.refunded_cents) == (PaymentState.REFUNDED, 1000)
        [email] = db_session.scalars(select(OutboxEmail)).all()
        assert email.context["refund"] is True

    def test_a_hold_that_lapsed_cancels_the_call_and_is_reconciled(
        self, app, client, seller, db_session, checkout, enqueued
    ) -> None:  # type: ignore[no-untyped-def]
        call_request = paid_request(checkout, seller)
        checkout.cancel(call_request.transaction.stripe_payment_intent_id, idempotency_key="lapsed")
        login(client, seller)
        decide(client, call_request, "accept")

        with app.app_context():
            assert capture_accepted(str(call_request.id)) == "failed"
            # The capture failure publishes the release; the hold is gone already, so the
            # release asks the gateway and records what it says.
            assert (RELEASE, (str(call_request.id),), {}) in enqueued
            assert release_hold(str(call_request.id)) == "voided"

        db_session.expire_all()
        after = db_session.get(CallRequest, call_request.id)
        assert (after.status, after.cancel_reason) == (RequestStatus.CANCELLED, CancelReason.PAYMENT_FAILED)
        assert payment_state(db_session, call_request) is PaymentState.VOIDED
        templates = {row.template for row in db_session.scalars(select(OutboxEmail))}
        assert templates == {"payment_failed_buyer", "payment_failed_seller"}
        assert PROVISION not in enqueued.names()


class TestWithStripe:
    @pytest.fixture
    def stripe_app(self, db_session, make_app, settings):  # type: ignore[no-untyped-def]
        with FakeStripe() as fake:
            yield make_app(settings.replace(stripe_secret_key="sk_test_chatlink", stripe_api_base=fake.url)), fake

    def test_transient_errors_are_retried_with_the_same_key(self, stripe_app, db_session, enqueued) -> None:  # type: ignore[no-untyped-def]
        stripe_app_, fake = stripe_app
        call_request = CallRequestFactory(
            status=RequestStatus.ACCEPTED, accepted_at=utcnow(), join_deadline=utcnow() + timedelta(minutes=15)
        )
        for _ in range(3):  # stripe-python retries twice itself, then the task retries
            fake.fail_next(503)

        with stripe_app_.app_context():
            result = capture_accepted.apply(args=(str(call_request.id),))

        assert result.successful(), result.traceback
        assert result.result == "captured"
        captures = [r for r in fake.requests if r.path.endswith("/capture")]
        assert len(captures) == 4
        assert {r.idempotency_key for r in captures} == {f"capture:{call_request.id}"}
        assert payment_state(db_session, call_request) is PaymentState.CAPTURED
        assert PROVISION in enqueued.names()

    def test_a_refused_capture_is_not_retried(self, stripe_app, db_session) -> None:  # type: ignore[no-untyped-def]
        stripe_app_, fake = stripe_app
        call_request = CallRequestFactory(
            status=RequestStatus.ACCEPTED, accepted_at=utcnow(), join_deadline=utcnow() + timedelta(minutes=15)
        )
        fake.fail_next(400, "payment_intent_unexpected_state")

        with stripe_app_.app_context():
            result = capture_accepted.apply(args=(str(call_request.id),))

        assert result.result == "failed"
        assert len(fake.requests) == 1
        db_session.expire_all()
        assert db_session.get(CallRequest, call_request.id).cancel_reason is CancelReason.PAYMENT_FAILED

    def test_release_sends_the_cancel_key(self, stripe_app, db_session) -> None:  # type: ignore[no-untyped-def]
        stripe_app_, fake = stripe_app
        call_request = CallRequestFactory(status=RequestStatus.DECLINED, declined_at=utcnow())

        with stripe_app_.app_context():
            assert release_hold.apply(args=(str(call_request.id),)).result == "voided"

        [request] = fake.requests
        assert request.path == f"/v1/payment_intents/{call_request.transaction.stripe_payment_intent_id}/cancel"
        assert request.idempotency_key == f"cancel:{call_request.id}"


class TestSweep:
    def test_the_beat_sweep_expires_overdue_requests(self, app, db_session, seller, enqueued, caplog) -> None:  # type: ignore[no-untyped-def]
        with freeze_time("2026-11-25 12:00:00"):
            overdue = CallRequestFactory(transaction__seller=seller)
        db_session.commit()

        with freeze_time("2026-11-26 12:00:05"), app.app_context(), caplog.at_level(logging.DEBUG, "tasks"):
            report = sweep()
            idle = sweep()

        assert report["requests_expired"] == 1
        # A sweep that found work says so at INFO; an idle one (every 5 seconds) only at DEBUG.
        assert [r.levelno for r in caplog.records if r.msg == "sweep"] == [logging.INFO, logging.DEBUG]
        assert "requests_expired" not in idle  # its question found nothing, so the step did not run
        db_session.expire_all()
        after = db_session.get(CallRequest, overdue.id)
        assert (after.status, after.cancel_reason) == (RequestStatus.CANCELLED, CancelReason.EXPIRED)
        assert (RELEASE, (str(overdue.id),), {}) in enqueued
