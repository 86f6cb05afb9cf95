"""The webhook inbox and its handlers, called directly with real PostgreSQL and the built-in
gateway on real Redis (the re-fetch goes through it exactly as it would go to Stripe)."""

from __future__ import annotations

import copy
import json
import secrets
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.db import utcnow
from app.integrations.builtin_payments import BuiltinGateway, builtin_gateway
from app.integrations.payments import PaymentError, StripeGateway
from app.models import (
    Block,
    CallRequest,
    Checkout,
    CheckoutStatus,
    EventLog,
    OutboxEmail,
    PaymentState,
    RequestStatus,
    StripeEvent,
    StripeEventStatus,
    Transaction,
)
from app.services import stripe_events
from app.services.checkout import start_checkout
from app.services.email_delivery import jinja_renderer
from tests.factories import ProfileFactory
from tests.fakes.stripe_api import FakeStripe

# Real event bodies as Stripe sends them; see tests/fixtures/stripe/SOURCES.md.
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "stripe"
FEE_BPS = 2000
TTL = 86400


@pytest.fixture
def builtin(settings, redis) -> BuiltinGateway:
    return builtin_gateway(settings, redis, notify=lambda event: None)


@pytest.fixture
def seller(db_session):  # type: ignore[no-untyped-def]
    return ProfileFactory(display_name="Grace Hopper", price_cents=1000)


def open_checkout(db_session, gateway, profile, *, email="buyer@example.org", manual=True) -> Checkout:  # type: ignore[no-untyped-def]
    return start_checkout(
        db_session,
        slug=profile.slug,
        buyer_email=email,
        note="About COBOL",
        submission_key=secrets.token_urlsafe(24),
        gateway=gateway,
        app_url="http://127.0.0.1:5000",
        app_env="test",
        capture_manually=manual,
        now=utcnow(),
    )


def paid_session(db_session, builtin, profile, **kwargs) -> dict:  # type: ignore[no-untyped-def]
    checkout = open_checkout(db_session, builtin, profile, **kwargs)
    return builtin.pay(checkout.stripe_checkout_session_id)


def event(event_type: str, obj: dict, event_id: str | None = None) -> dict:
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "type": event_type,
        "livemode": False,
        "data": {"object": obj},
    }


def deliver(db_session, gateway, body: dict) -> StripeEventStatus | None:  # type: ignore[no-untyped-def]
    row_id = stripe_events.record_event(db_session, body)
    if row_id is None:
        return None
    return stripe_events.process_event(
        db_session,
        row_id,
        gateway=gateway,
        app_env="test",
        platform_fee_bps=FEE_BPS,
        request_ttl_seconds=TTL,
        now=utcnow(),
    )


def count(db_session, model) -> int:  # type: ignore[no-untyped-def]
    return db_session.scalar(select(func.count()).select_from(model))


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


class TestCheckoutCompleted:
    def test_a_held_payment_creates_the_transaction_the_request_and_two_emails(self, db_session, builtin, seller):
        session = paid_session(db_session, builtin, seller)

        assert deliver(db_session, builtin, event("checkout.session.completed", session)) == StripeEventStatus.PROCESSED

        transaction = db_session.scalar(select(Transaction))
        assert transaction.stripe_checkout_session_id == session["id"]
        assert transaction.stripe_payment_intent_id == session["payment_intent"]
        assert (transaction.gross_cents, transaction.platform_fee_cents, transaction.net_cents) == (1000, 200, 800)
        assert transaction.payment_state == PaymentState.HELD
        assert transaction.captured_at is None
        request = db_session.scalar(select(CallRequest))
        assert request.status == RequestStatus.PENDING
        assert request.note == "About COBOL"
        assert request.buyer_email == "buyer@example.org"
        assert request.transaction_id == transaction.id
        assert timedelta(seconds=TTL - 60) < request.expires_at - utcnow() <= timedelta(seconds=TTL)
        emails = {row.template: row for row in db_session.scalars(select(OutboxEmail))}
        assert set(emails) == {"request_created_seller", "payment_received_buyer"}
        assert emails["request_created_seller"].recipient == seller.user.email
        assert emails["payment_received_buyer"].recipient == "buyer@example.org"
        assert emails["payment_received_buyer"].context["session_id"] == session["id"]
        assert emails["request_created_seller"].context["net_amount"] == "$8.00"
        checkout = db_session.scalar(select(Checkout))
        assert checkout.status == CheckoutStatus.COMPLETE
        assert db_session.scalar(select(EventLog).where(EventLog.type == "payment.received")) is not None

    def test_an_immediate_payment_is_recorded_captured(self, db_session, builtin, seller):
        session = paid_session(db_session, builtin, seller, manual=False)
        deliver(db_session, builtin, event("checkout.session.completed", session))
        transaction = db_session.scalar(select(Transaction))
        assert transaction.payment_state == PaymentState.CAPTURED
        assert transaction.captured_at is not None

    def test_the_same_event_twice_is_stored_and_run_once(self, db_session, builtin, seller):
        body = event("checkout.session.completed", paid_session(db_session, builtin, seller))
        assert deliver(db_session, builtin, body) == StripeEventStatus.PROCESSED
        assert deliver(db_session, builtin, copy.deepcopy(body)) is None
        row = db_session.scalar(select(StripeEvent))
        # Processing the row again (a redelivered task) does nothing either.
        assert (
            stripe_events.process_event(
                db_session,
                row.id,
                gateway=builtin,
                app_env="test",
                platform_fee_bps=FEE_BPS,
                request_ttl_seconds=TTL,
                now=utcnow(),
            )
            is None
        )
        assert (count(db_session, StripeEvent), count(db_session, Transaction), count(db_session, CallRequest)) == (
            1,
            1,
            1,
        )
        assert count(db_session, OutboxEmail) == 2

    def test_two_events_for_one_payment_fulfil_it_once(self, db_session, builtin, seller):
        session = paid_session(db_session, builtin, seller)
        deliver(db_session, builtin, event("checkout.session.async_payment_succeeded", session))
        assert deliver(db_session, builtin, event("checkout.session.completed", session)) == StripeEventStatus.PROCESSED
        assert db_session.scalar(select(StripeEvent.error).where(StripeEvent.type.endswith("completed"))) == (
            "already fulfilled"
        )
        assert (count(db_session, Transaction), count(db_session, CallRequest), count(db_session, OutboxEmail)) == (
            1,
            1,
            2,
        )

    def test_another_environment_is_ignored_without_asking_the_gateway(self, db_session, builtin, seller):
        session = paid_session(db_session, builtin, seller)
        session["metadata"] = {**session["metadata"], "env": "production"}
        session["id"] = "cs_test_not_in_the_gateway"  # a re-fetch would fail loudly
        assert deliver(db_session, builtin, event("checkout.session.completed", session)) == StripeEventStatus.IGNORED
        assert count(db_session, Transaction) == 0

    def test_metadata_is_checked_again_on_the_refetched_session(self, db_session, builtin, seller):
        session = paid_session(db_session, builtin, seller)
        forged = {**session, "metadata": {"app": "chatlink", "env": "test"}}
        stored = builtin.session(session["id"])
        stored["metadata"] = {"app": "someone-else"}
        builtin.seed_session({**stored, "_line_item": "x", "_capture_method": "manual"})
        assert deliver(db_session, builtin, event("checkout.session.completed", forged)) == StripeEventStatus.IGNORED
        assert count(db_session, Transaction) == 0

    def test_an_unpaid_async_session_waits_for_the_async_event(self, db_session, builtin, seller):
        session = paid_session(db_session, builtin, seller)
        intent_key = f"{builtin.ns}:pi:{session['payment_intent']}"
        intent = json.loads(builtin.redis.get(intent_key))
        builtin.redis.set(intent_key, json.dumps({**intent, "status": "processing"}))

        assert deliver(db_session, builtin, event("checkout.session.completed", session)) == StripeEventStatus.PROCESSED
        assert count(db_session, Transaction) == 0
        assert db_session.scalar(select(StripeEvent.error)) == "waiting: payment intent processing"

        builtin.redis.set(intent_key, json.dumps({**intent, "status": "succeeded"}))
        deliver(db_session, builtin, event("checkout.session.async_payment_succeeded", session))
        assert db_session.scalar(select(Transaction.payment_state)) == PaymentState.CAPTURED
        assert count(db_session, CallRequest) == 1

    def test_a_buyer_blocked_after_checkout_gets_a_cancelled_request_and_the_hold_released(
        self, db_session, builtin, seller, enqueued
    ):
        session = paid_session(db_session, builtin, seller, email="Pest@Example.org")
        db_session.add(Block(seller_id=seller.user_id, buyer_email="pest@example.org"))
        db_session.flush()

        deliver(db_session, builtin, event("checkout.session.completed", session))
        db_session.commit()

        request = db_session.scalar(select(CallRequest))
        assert (request.status, request.cancel_reason.value) == (RequestStatus.CANCELLED, "blocked")
        assert request.cancelled_at is not None
        # The hold is released by a task after commit, never inside the webhook's transaction.
        assert db_session.scalar(select(Transaction.payment_state)) == PaymentState.HELD
        assert "tasks.request_payments.release_hold" in enqueued.names()
        assert next(args for name, args, _ in enqueued if name == "tasks.request_payments.release_hold")[0] == str(
            request.id
        )
        assert [row.template for row in db_session.scalars(select(OutboxEmail))] == ["payment_released_buyer"]

    def test_a_transient_gateway_error_leaves_the_event_for_a_retry(self, db_session, seller):
        with FakeStripe() as fake:
            gateway = StripeGateway("sk_test_fake", api_base=fake.url, timeout=5, max_network_retries=0)
            checkout = open_checkout(db_session, gateway, seller)
            session = fake.sessions[checkout.stripe_checkout_session_id]
            fake.fail_next(503)
            with pytest.raises(PaymentError) as raised:
                deliver(db_session, gateway, event("checkout.session.completed", session))
            assert raised.value.transient is True
            assert db_session.scalar(select(StripeEvent.status)) == StripeEventStatus.RECEIVED

    def test_a_permanent_gateway_error_marks_the_event_failed(self, db_session, seller):
        with FakeStripe() as fake:
            gateway = StripeGateway("sk_test_fake", api_base=fake.url, timeout=5, max_network_retries=0)
            checkout = open_checkout(db_session, gateway, seller)
            session = dict(fake.sessions.pop(checkout.stripe_checkout_session_id))
            assert (
                deliver(db_session, gateway, event("checkout.session.completed", session)) == StripeEventStatus.FAILED
            )
            assert "resource_missing" in db_session.scalar(select(StripeEvent.error))
            assert count(db_session, Transaction) == 0


class TestOtherEvents:
    def test_expired_closes_the_checkout_and_a_late_completed_creates_nothing(self, db_session, builtin, seller):
        checkout = open_checkout(db_session, builtin, seller)
        expired = builtin.expire(checkout.stripe_checkout_session_id)

        assert deliver(db_session, builtin, event("checkout.session.expired", expired)) == StripeEventStatus.PROCESSED
        assert db_session.scalar(select(Checkout.status)) == CheckoutStatus.EXPIRED
        deliver(db_session, builtin, event("checkout.session.completed", {**expired, "status": "complete"}))
        assert count(db_session, Transaction) == 0

    def test_charge_refunded_syncs_the_amount_and_only_moves_forward(self, db_session, builtin, seller):
        session = paid_session(db_session, builtin, seller, manual=False)
        deliver(db_session, builtin, event("checkout.session.completed", session))
        charge = {"id": "ch_1", "object": "charge", "payment_intent": session["payment_intent"], "metadata": {}}

        deliver(db_session, builtin, event("charge.refunded", {**charge, "amount_refunded": 400}))
        transaction = db_session.scalar(select(Transaction).execution_options(populate_existing=True))
        assert (transaction.refunded_cents, transaction.payment_state) == (400, PaymentState.CAPTURED)

        deliver(db_session, builtin, event("charge.refunded", {**charge, "amount_refunded": 1000}))
        deliver(db_session, builtin, event("charge.refunded", {**charge, "amount_refunded": 400}))  # late, older
        transaction = db_session.scalar(select(Transaction).execution_options(populate_existing=True))
        assert (transaction.refunded_cents, transaction.payment_state) == (1000, PaymentState.REFUNDED)
        assert transaction.refunded_at is not None

    def test_a_dispute_marks_the_payment_and_is_logged_once(self, db_session, builtin, seller):
        session = paid_session(db_session, builtin, seller, manual=False)
        deliver(db_session, builtin, event("checkout.session.completed", session))
        dispute = {
            "id": "dp_1",
            "object": "dispute",
            "amount": 1000,
            "reason": "fraudulent",
            "status": "needs_response",
        }

        deliver(
            db_session,
            builtin,
            event("charge.dispute.created", {**dispute, "payment_intent": session["payment_intent"]}),
        )
        # An older API shape names only the charge; the gateway knows its PaymentIntent.
        charge_id = json.loads(builtin.redis.get(f"{builtin.ns}:pi:{session['payment_intent']}"))["latest_charge"]
        deliver(db_session, builtin, event("charge.dispute.created", {**dispute, "charge": charge_id}))

        transaction = db_session.scalar(select(Transaction).execution_options(populate_existing=True))
        assert transaction.payment_state == PaymentState.DISPUTED
        assert transaction.disputed_at is not None
        logs = list(db_session.scalars(select(EventLog).where(EventLog.type == "payment.disputed")))
        assert len(logs) == 1
        assert logs[0].ref_id == str(transaction.id)
        assert logs[0].payload["reason"] == "fraudulent"

    def test_an_unknown_type_is_ignored(self, db_session, builtin):
        assert deliver(db_session, builtin, event("customer.created", {"id": "cus_1"})) == StripeEventStatus.IGNORED
        assert db_session.scalar(select(StripeEvent.error)) == "unhandled event type"


class TestRealEventBodies:
    @pytest.mark.parametrize(
        "name",
        [
            "checkout.session.completed.json",
            "checkout.session.completed.payment_mode.json",
            "charge.refunded.json",
            "charge.refund.updated.json",
            "charge.dispute.created.json",
            "payment_intent.succeeded.json",
        ],
    )
    def test_bodies_without_our_metadata_are_ignored(self, db_session, builtin, name):
        assert deliver(db_session, builtin, load_fixture(name)) == StripeEventStatus.IGNORED
        assert count(db_session, Transaction) == 0

    def test_a_real_completed_body_with_our_metadata_is_fulfilled(self, db_session, builtin, seller):
        session = paid_session(db_session, builtin, seller)
        body = load_fixture("checkout.session.completed.payment_mode.json")
        body["data"]["object"].update(id=session["id"], metadata=session["metadata"])

        assert deliver(db_session, builtin, body) == StripeEventStatus.PROCESSED
        # The amounts come from the re-fetched session, not from the body (25000 there).
        assert db_session.scalar(select(Transaction.gross_cents)) == 1000


class TestRequeue:
    def test_events_left_unprocessed_are_published_again_with_backoff(self, db_session, settings, enqueued):
        now = utcnow()
        old = StripeEvent(stripe_event_id="evt_old", type="x", payload={}, received_at=now - timedelta(seconds=61))
        fresh = StripeEvent(stripe_event_id="evt_new", type="x", payload={}, received_at=now)
        db_session.add_all([old, fresh])
        db_session.flush()

        assert stripe_events.requeue_stuck_events(db_session, now, settings) == {"inbox_requeued": 1, "inbox_failed": 0}
        db_session.commit()
        assert enqueued == [("tasks.stripe_events.process_stripe_event", (str(old.id),), {})]
        assert old.attempts == 1
        # Next time only after twice as long (120 s after it arrived); the fresh one is not due yet.
        assert stripe_events.requeue_stuck_events(db_session, now, settings)["inbox_requeued"] == 0
        later = now + timedelta(seconds=59)
        assert stripe_events.requeue_stuck_events(db_session, later, settings)["inbox_requeued"] == 1
        assert (old.attempts, fresh.attempts) == (2, 0)

    def test_an_event_never_processed_is_given_up_for_an_operator(self, db_session, settings):
        now = utcnow()
        row = StripeEvent(
            stripe_event_id="evt_stuck",
            type="x",
            payload={},
            attempts=stripe_events.MAX_REQUEUES,
            received_at=now - timedelta(days=30),
        )
        db_session.add(row)
        db_session.flush()
        assert stripe_events.requeue_stuck_events(db_session, now, settings)["inbox_failed"] == 1
        assert row.status == StripeEventStatus.FAILED


class TestEmails:
    def render_all(self, app, db_session) -> dict:  # type: ignore[no-untyped-def]
        render = jinja_renderer(app.jinja_env, app_url="https://chatlink.example")
        return {row.template: render(row.template, row.context) for row in db_session.scalars(select(OutboxEmail))}

    def test_the_seller_and_the_buyer_emails_render_with_their_links(self, app, db_session, builtin, seller):
        session = paid_session(db_session, builtin, seller)
        deliver(db_session, builtin, event("checkout.session.completed", session))

        emails = self.render_all(app, db_session)

        seller_email, buyer_email = emails["request_created_seller"], emails["payment_received_buyer"]
        assert seller_email.subject == "New call request: $10.00 from buyer@example.org"
        assert "https://chatlink.example/dashboard" in seller_email.text_body
        assert "About COBOL" in seller_email.html_body
        assert "you earn $8" in seller_email.text_body
        assert buyer_email.subject == "Your call request to Grace Hopper is on its way"
        status_link = f"https://chatlink.example/success?session_id={session['id']}"
        assert status_link in buyer_email.text_body and status_link in buyer_email.html_body
        assert "You are charged only if Grace Hopper accepts" in buyer_email.text_body

    def test_a_blocked_buyer_is_told_the_hold_is_released(self, app, db_session, builtin, seller):
        session = paid_session(db_session, builtin, seller)
        db_session.add(Block(seller_id=seller.user_id, buyer_email="buyer@example.org"))
        db_session.flush()
        deliver(db_session, builtin, event("checkout.session.completed", session))

        (released,) = self.render_all(app, db_session).values()
        assert released.subject == "Your request to Grace Hopper could not be delivered: you were not charged"
        assert "Your card was not charged" in released.text_body


def test_the_sweep_runs_the_inbox_requeue():
    from tasks.maintenance import SWEEP_STEPS

    assert stripe_events.requeue_stuck_events in SWEEP_STEPS
