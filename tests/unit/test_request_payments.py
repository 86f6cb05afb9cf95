"""Capture on accept, release on decline or expiry, and the sweep that re-publishes lost work.

The gateway is a small in-memory fake implementing the PaymentGateway Protocol: it records every
call with its idempotency key, answers a repeated key with the first answer (as Stripe does) and
raises scripted errors.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from app.db import utcnow
from app.integrations.payments import CheckoutRequest, CheckoutSnapshot, CreatedCheckout, PaymentError
from app.models import CallRequest, CancelReason, EventLog, OutboxEmail, PaymentState, RequestStatus, Transaction
from app.services.lifecycle.decisions import accept_request, decline_request
from app.services.request_payments import (
    FOLLOW_UP_WINDOW,
    GatewayUnavailable,
    capture_accepted_payment,
    payment_followups,
    release_payment,
)
from tests.factories import CallRequestFactory

CAPTURE = "tasks.request_payments.capture_accepted"
RELEASE = "tasks.request_payments.release_hold"
PROVISION = "tasks.calls.provision_room"


class FakeGateway:
    def __init__(self, intent_status: str = "requires_capture") -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.failures: dict[str, list[PaymentError]] = defaultdict(list)
        self.answers: dict[str, str] = {}
        self.intent_status = intent_status

    def fail(self, method: str, *errors: PaymentError) -> None:
        self.failures[method].extend(errors)

    def _call(self, method: str, payment_intent_id: str, key: str, answer: str) -> str:
        self.calls.append((method, payment_intent_id, key))
        if self.failures[method]:
            raise self.failures[method].pop(0)
        return self.answers.setdefault(key, answer)

    def create_checkout(self, request: CheckoutRequest) -> CreatedCheckout:
        raise NotImplementedError

    def retrieve_checkout(self, session_id: str) -> CheckoutSnapshot:
        self.calls.append(("retrieve", session_id, ""))
        if self.failures["retrieve"]:
            raise self.failures["retrieve"].pop(0)
        return CheckoutSnapshot(
            session_id=session_id,
            status="complete",
            payment_status="unpaid",
            amount_total=1000,
            currency="usd",
            customer_email=None,
            metadata={},
            payment_intent_id="pi_x",
            payment_intent_status=self.intent_status,
        )

    def capture(self, payment_intent_id: str, *, idempotency_key: str) -> str:
        return self._call("capture", payment_intent_id, idempotency_key, "succeeded")

    def cancel(self, payment_intent_id: str, *, idempotency_key: str) -> str:
        return self._call("cancel", payment_intent_id, idempotency_key, "canceled")

    def refund(self, payment_intent_id: str, *, idempotency_key: str, amount_cents: int | None = None) -> str:
        return self._call("refund", payment_intent_id, idempotency_key, "succeeded")


def transient() -> PaymentError:
    return PaymentError("Stripe is unavailable", transient=True, code="api_connection_error")


def permanent(code: str = "payment_intent_unexpected_state") -> PaymentError:
    return PaymentError("refused", transient=False, code=code)


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


def accepted_request(**overrides) -> CallRequest:  # type: ignore[no-untyped-def]
    values = {
        "status": RequestStatus.ACCEPTED,
        "accepted_at": utcnow(),
        "join_deadline": utcnow() + timedelta(minutes=15),
        "join_key": "k" * 43,
    }
    return CallRequestFactory(**{**values, **overrides})


def state(session, call_request: CallRequest) -> tuple[RequestStatus, PaymentState]:  # type: ignore[no-untyped-def]
    session.expire_all()
    row = session.get(CallRequest, call_request.id)
    return row.status, session.get(Transaction, row.transaction_id).payment_state


def event_types(session, call_request: CallRequest) -> list[str]:  # type: ignore[no-untyped-def]
    return list(
        session.scalars(
            select(EventLog.type).where(EventLog.ref_id == str(call_request.id)).order_by(EventLog.created_at)
        )
    )


class TestCaptureAcceptedPayment:
    def test_captures_then_provisions_the_room(self, db_session, gateway, enqueued) -> None:  # type: ignore[no-untyped-def]
        call_request = accepted_request()
        now = utcnow()

        assert capture_accepted_payment(db_session, call_request.id, gateway=gateway, now=now) == "captured"
        db_session.commit()

        pi = call_request.transaction.stripe_payment_intent_id
        assert gateway.calls == [("capture", pi, f"capture:{call_request.id}")]
        assert state(db_session, call_request) == (RequestStatus.ACCEPTED, PaymentState.CAPTURED)
        assert db_session.get(Transaction, call_request.transaction_id).captured_at == now
        assert (PROVISION, (str(call_request.id),), {}) in enqueued
        assert event_types(db_session, call_request) == ["payment.captured"]

    def test_after_accept_through_the_service(self, db_session, gateway, enqueued) -> None:  # type: ignore[no-untyped-def]
        call_request = CallRequestFactory()
        accept_request(
            db_session, call_request.id, seller_id=call_request.seller_id, now=utcnow(), join_window_seconds=900
        )
        db_session.commit()
        [(_, args, _)] = [job for job in enqueued if job[0] == CAPTURE]

        assert capture_accepted_payment(db_session, args[0], gateway=gateway, now=utcnow()) == "captured"
        assert state(db_session, call_request) == (RequestStatus.ACCEPTED, PaymentState.CAPTURED)

    def test_repeat_does_not_capture_twice(self, db_session, gateway, enqueued) -> None:  # type: ignore[no-untyped-def]
        call_request = accepted_request()
        capture_accepted_payment(db_session, call_request.id, gateway=gateway, now=utcnow())
        db_session.commit()
        assert capture_accepted_payment(db_session, call_request.id, gateway=gateway, now=utcnow()) == "captured"
        db_session.commit()

        assert [c[0] for c in gateway.calls] == ["capture"]
        assert event_types(db_session, call_request) == ["payment.captured"]
        # The room task is published again: a repeat must still get the room provisioned.
        assert enqueued.names().count(PROVISION) == 2

    def test_crash_before_commit_then_retry_uses_the_same_key(self, db_session, gateway) -> None:  # type: ignore[no-untyped-def]
        call_request = accepted_request()
        db_session.commit()
        capture_accepted_payment(db_session, call_request.id, gateway=gateway, now=utcnow())
        db_session.rollback()  # the worker died after Stripe captured, before our commit

        capture_accepted_payment(db_session, call_request.id, gateway=gateway, now=utcnow())

        assert [c[2] for c in gateway.calls] == [f"capture:{call_request.id}"] * 2
        assert state(db_session, call_request) == (RequestStatus.ACCEPTED, PaymentState.CAPTURED)

    def test_immediate_capture_skips_the_gateway(self, db_session, gateway, enqueued) -> None:  # type: ignore[no-untyped-def]
        call_request = accepted_request(transaction__payment_state=PaymentState.CAPTURED)
        assert capture_accepted_payment(db_session, call_request.id, gateway=gateway, now=utcnow()) == "captured"
        db_session.commit()
        assert gateway.calls == []
        assert PROVISION in enqueued.names()

    def test_permanent_failure_cancels_the_call(self, db_session, gateway, enqueued) -> None:  # type: ignore[no-untyped-def]
        call_request = accepted_request()
        gateway.fail("capture", permanent("card_declined"))

        assert capture_accepted_payment(db_session, call_request.id, gateway=gateway, now=utcnow()) == "failed"
        db_session.commit()

        assert state(db_session, call_request) == (RequestStatus.CANCELLED, PaymentState.HELD)
        assert db_session.get(CallRequest, call_request.id).cancel_reason is CancelReason.PAYMENT_FAILED
        templates = {e.template for e in db_session.scalars(select(OutboxEmail))}
        assert templates == {"payment_failed_buyer", "payment_failed_seller"}
        assert PROVISION not in enqueued.names()
        assert (RELEASE, (str(call_request.id),), {}) in enqueued
        assert event_types(db_session, call_request) == ["payment.capture_failed", "request.payment_failed"]
        logged = db_session.scalar(select(EventLog).where(EventLog.type == "payment.capture_failed"))
        assert logged.payload == {"code": "card_declined"}

    def test_transient_failure_is_left_to_the_retry(self, db_session, gateway, enqueued) -> None:  # type: ignore[no-untyped-def]
        call_request = accepted_request()
        gateway.fail("capture", transient())

        with pytest.raises(GatewayUnavailable):
            capture_accepted_payment(db_session, call_request.id, gateway=gateway, now=utcnow())

        assert state(db_session, call_request) == (RequestStatus.ACCEPTED, PaymentState.HELD)
        assert capture_accepted_payment(db_session, call_request.id, gateway=gateway, now=utcnow()) == "captured"
        assert [c[2] for c in gateway.calls] == [f"capture:{call_request.id}"] * 2

    @pytest.mark.parametrize("status", [RequestStatus.PENDING, RequestStatus.DECLINED, RequestStatus.COMPLETED])
    def test_request_not_accepted_is_skipped(self, db_session, gateway, status) -> None:  # type: ignore[no-untyped-def]
        call_request = CallRequestFactory(status=status)
        assert capture_accepted_payment(db_session, call_request.id, gateway=gateway, now=utcnow()) == "skipped"
        assert gateway.calls == []

    def test_voided_payment_cancels_the_call(self, db_session, gateway) -> None:  # type: ignore[no-untyped-def]
        call_request = accepted_request(transaction__payment_state=PaymentState.VOIDED)
        assert capture_accepted_payment(db_session, call_request.id, gateway=gateway, now=utcnow()) == "failed"
        assert state(db_session, call_request) == (RequestStatus.CANCELLED, PaymentState.VOIDED)
        assert gateway.calls == []


def declined_request(**overrides) -> CallRequest:  # type: ignore[no-untyped-def]
    return CallRequestFactory(status=RequestStatus.DECLINED, declined_at=utcnow(), **overrides)


class TestReleasePayment:
    def test_declined_hold_is_cancelled(self, db_session, gateway) -> None:  # type: ignore[no-untyped-def]
        call_request = declined_request()
        now = utcnow()

        assert release_payment(db_session, call_request.id, gateway=gateway, now=now) == "voided"

        pi = call_request.transaction.stripe_payment_intent_id
        assert gateway.calls == [("cancel", pi, f"cancel:{call_request.id}")]
        assert state(db_session, call_request) == (RequestStatus.DECLINED, PaymentState.VOIDED)
        assert db_session.get(Transaction, call_request.transaction_id).voided_at == now
        assert event_types(db_session, call_request) == ["payment.voided"]

    def test_run_twice_releases_once(self, db_session, gateway) -> None:  # type: ignore[no-untyped-def]
        call_request = declined_request()
        release_payment(db_session, call_request.id, gateway=gateway, now=utcnow())
        db_session.commit()

        assert release_payment(db_session, call_request.id, gateway=gateway, now=utcnow()) == "unchanged"

        assert len(gateway.calls) == 1
        assert state(db_session, call_request) == (RequestStatus.DECLINED, PaymentState.VOIDED)
        assert event_types(db_session, call_request) == ["payment.voided"]

    def test_crash_before_commit_then_retry_uses_the_same_key(self, db_session, gateway) -> None:  # type: ignore[no-untyped-def]
        call_request = declined_request()
        db_session.commit()
        release_payment(db_session, call_request.id, gateway=gateway, now=utcnow())
        db_session.rollback()  # the gateway released the hold; our commit never happened

        assert release_payment(db_session, call_request.id, gateway=gateway, now=utcnow()) == "voided"

        assert [c[:1] + c[2:] for c in gateway.calls] == [("cancel", f"cancel:{call_request.id}")] * 2
        assert state(db_session, call_request) == (RequestStatus.DECLINED, PaymentState.VOIDED)
        assert event_types(db_session, call_request) == ["payment.voided"]

    def test_captured_payment_is_refunded(self, db_session, gateway) -> None:  # type: ignore[no-untyped-def]
        call_request = declined_request(transaction__payment_state=PaymentState.CAPTURED)
        now = utcnow()

        assert release_payment(db_session, call_request.id, gateway=gateway, now=now) == "refunded"

        assert [c[0::2] for c in gateway.calls] == [("refund", f"refund:{call_request.id}")]
        db_session.expire_all()
        transaction = db_session.get(Transaction, call_request.transaction_id)
        assert (transaction.payment_state, transaction.refunded_cents, transaction.refunded_at) == (
            PaymentState.REFUNDED,
            1000,
            now,
        )
        assert release_payment(db_session, call_request.id, gateway=gateway, now=now) == "unchanged"
        assert len(gateway.calls) == 1

    @pytest.mark.parametrize(
        "reason",
        [CancelReason.EXPIRED, CancelReason.PAYMENT_FAILED, CancelReason.BLOCKED, CancelReason.BUYER_CANCELLED],
    )
    def test_cancelled_requests_are_released(self, db_session, gateway, reason) -> None:  # type: ignore[no-untyped-def]
        call_request = CallRequestFactory(status=RequestStatus.CANCELLED, cancel_reason=reason, cancelled_at=utcnow())
        assert release_payment(db_session, call_request.id, gateway=gateway, now=utcnow()) == "voided"

    @pytest.mark.parametrize(
        ("status", "reason"),
        [
            (RequestStatus.PENDING, None),
            (RequestStatus.ACCEPTED, None),
            (RequestStatus.COMPLETED, None),
            (RequestStatus.CANCELLED, CancelReason.BUYER_NO_SHOW),
            (RequestStatus.CANCELLED, CancelReason.SELLER_NO_SHOW),
        ],
    )
    def test_other_requests_are_left_alone(self, db_session, gateway, status, reason) -> None:  # type: ignore[no-untyped-def]
        call_request = CallRequestFactory(status=status, cancel_reason=reason)
        assert release_payment(db_session, call_request.id, gateway=gateway, now=utcnow()) == "skipped"
        assert gateway.calls == []
        assert state(db_session, call_request)[1] is PaymentState.HELD

    def test_transient_failure_is_left_to_the_retry(self, db_session, gateway) -> None:  # type: ignore[no-untyped-def]
        call_request = declined_request()
        gateway.fail("cancel", transient())
        with pytest.raises(GatewayUnavailable):
            release_payment(db_session, call_request.id, gateway=gateway, now=utcnow())
        assert state(db_session, call_request)[1] is PaymentState.HELD

    def test_hold_already_gone_is_recorded_as_voided(self, db_session) -> None:  # type: ignore[no-untyped-def]
        gateway = FakeGateway(intent_status="canceled")
        gateway.fail("cancel", permanent())
        call_request = declined_request()

        assert release_payment(db_session, call_request.id, gateway=gateway, now=utcnow()) == "voided"
        assert [c[0] for c in gateway.calls] == ["cancel", "retrieve"]
        assert state(db_session, call_request)[1] is PaymentState.VOIDED

    def test_hold_captured_elsewhere_is_refunded(self, db_session) -> None:  # type: ignore[no-untyped-def]
        gateway = FakeGateway(intent_status="succeeded")
        gateway.fail("cancel", permanent())
        call_request = declined_request()

        assert release_payment(db_session, call_request.id, gateway=gateway, now=utcnow()) == "refunded"
        assert [c[0] for c in gateway.calls] == ["cancel", "retrieve", "refund"]
        assert state(db_session, call_request)[1] is PaymentState.REFUNDED

    def test_unexplained_refusal_is_recorded_for_an_operator(self, db_session) -> None:  # type: ignore[no-untyped-def]
        gateway = FakeGateway(intent_status="processing")
        gateway.fail("cancel", permanent())
        call_request = declined_request()

        assert release_payment(db_session, call_request.id, gateway=gateway, now=utcnow()) == "failed"
        assert state(db_session, call_request)[1] is PaymentState.HELD
        assert event_types(db_session, call_request) == ["payment.release_failed"]

    def test_already_refunded_charge_counts_as_refunded(self, db_session, gateway) -> None:  # type: ignore[no-untyped-def]
        gateway.fail("refund", permanent("charge_already_refunded"))
        call_request = declined_request(transaction__payment_state=PaymentState.CAPTURED)
        assert release_payment(db_session, call_request.id, gateway=gateway, now=utcnow()) == "refunded"
        assert state(db_session, call_request)[1] is PaymentState.REFUNDED

    def test_decline_then_release_end_to_end(self, db_session, gateway, enqueued) -> None:  # type: ignore[no-untyped-def]
        call_request = CallRequestFactory()
        decline_request(db_session, call_request.id, seller_id=call_request.seller_id, now=utcnow())
        db_session.commit()
        [(_, args, _)] = [job for job in enqueued if job[0] == RELEASE]

        assert release_payment(db_session, args[0], gateway=gateway, now=utcnow()) == "voided"


class TestPaymentFollowups:
    def test_lost_capture_is_republished_then_left_alone(self, db_session, settings, enqueued) -> None:  # type: ignore[no-untyped-def]
        with freeze_time("2026-11-25 12:00:00"):
            stuck = accepted_request(updated_at=utcnow())
            fresh_deadline = accepted_request(updated_at=utcnow(), join_deadline=utcnow() + timedelta(seconds=90))
        with freeze_time("2026-11-25 12:01:59"):
            assert payment_followups(db_session, utcnow(), settings) == {"captures_requeued": 0, "releases_requeued": 0}
        with freeze_time("2026-11-25 12:02:01"):
            report = payment_followups(db_session, utcnow(), settings)
            db_session.commit()
            again = payment_followups(db_session, utcnow(), settings)

        assert report == {"captures_requeued": 1, "releases_requeued": 0}
        assert again == {"captures_requeued": 0, "releases_requeued": 0}
        assert [args for name, args, _ in enqueued if name == CAPTURE] == [(str(stuck.id),)]
        assert fresh_deadline.id not in {args[0] for _, args, _ in enqueued}

        with freeze_time("2026-11-25 12:04:02"):
            assert payment_followups(db_session, utcnow(), settings)["captures_requeued"] == 1

    def test_lost_release_is_republished(self, db_session, settings, enqueued) -> None:  # type: ignore[no-untyped-def]
        with freeze_time("2026-11-25 12:00:00"):
            held = declined_request(updated_at=utcnow())
            captured = CallRequestFactory(
                status=RequestStatus.CANCELLED,
                cancel_reason=CancelReason.EXPIRED,
                cancelled_at=utcnow(),
                updated_at=utcnow(),
                transaction__payment_state=PaymentState.CAPTURED,
            )
            declined_request(updated_at=utcnow(), transaction__payment_state=PaymentState.VOIDED)
            CallRequestFactory(
                status=RequestStatus.CANCELLED,
                cancel_reason=CancelReason.BUYER_NO_SHOW,
                cancelled_at=utcnow(),
                updated_at=utcnow(),
            )
            refused = declined_request(updated_at=utcnow())
            db_session.add(EventLog(type="payment.release_failed", ref_id=str(refused.id), actor="system"))
        with freeze_time("2026-11-25 12:05:00"):
            report = payment_followups(db_session, utcnow(), settings)
            db_session.commit()

        assert report == {"captures_requeued": 0, "releases_requeued": 2}
        assert {args[0] for name, args, _ in enqueued if name == RELEASE} == {str(held.id), str(captured.id)}

    def test_a_release_is_followed_up_for_the_window_and_then_left_to_an_operator(  # type: ignore[no-untyped-def]
        self, db_session, settings, enqueued
    ) -> None:
        declined_at = datetime(2026, 11, 25, 12, tzinfo=UTC)
        with freeze_time(declined_at):
            declined = declined_request(updated_at=utcnow())
        with freeze_time(declined_at + FOLLOW_UP_WINDOW - timedelta(minutes=1)):
            assert payment_followups(db_session, utcnow(), settings)["releases_requeued"] == 1
            db_session.commit()
        # Still unreleased a full window later (each attempt failed): no longer the sweep's.
        with freeze_time(declined_at + FOLLOW_UP_WINDOW + timedelta(minutes=1)):
            assert payment_followups(db_session, utcnow(), settings)["releases_requeued"] == 0
        assert [args for name, args, _ in enqueued if name == RELEASE] == [(str(declined.id),)]

    def test_a_pending_request_is_never_followed_up(self, db_session, settings, enqueued) -> None:  # type: ignore[no-untyped-def]
        with freeze_time("2026-11-25 12:00:00"):
            CallRequestFactory(updated_at=utcnow())
        with freeze_time("2026-11-25 13:00:00"):
            assert payment_followups(db_session, utcnow(), settings) == {"captures_requeued": 0, "releases_requeued": 0}


class TestFollowUpsOverAllHistory:
    def test_a_release_older_than_the_sweeps_look_back_is_found_by_the_hourly_sweep(
        self, db_session, settings, enqueued
    ) -> None:  # type: ignore[no-untyped-def]
        from app.services.request_payments import FOLLOW_UP_WINDOW, payment_followups_all_history

        with freeze_time("2026-11-20 12:00:00"):
            forgotten = declined_request()
        with freeze_time("2026-11-25 12:00:00"):
            assert utcnow() - forgotten.declined_at > FOLLOW_UP_WINDOW
            assert payment_followups(db_session, utcnow(), settings)["releases_requeued"] == 0
            assert payment_followups_all_history(db_session, utcnow(), settings)["releases_requeued"] == 1
            db_session.commit()
        assert [args for name, args, _ in enqueued if name == RELEASE] == [(str(forgotten.id),)]
