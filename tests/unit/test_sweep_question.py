"""The sweep's first question (``app.services.sweeping``): which steps have anything to look at.

A sweep runs only the steps its question names, so a question that says "nothing" where its step
would have found work loses that work until the next hourly full sweep. Each scenario here builds
the state one step looks for, then, at the moment the sweep would run, asks the question and runs
every probed step in a savepoint that is rolled back: the scenario's step must be named and find
its work, and no step the question leaves out may find any.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.db import utcnow
from app.models import (
    CallRequest,
    CallSettlement,
    CancelReason,
    DailyEvent,
    DailyEventStatus,
    EmailStatus,
    OutboxEmail,
    PaymentState,
    PayoutRequest,
    PayoutTransfer,
    PhotoDeletion,
    ProblemCase,
    ProblemReason,
    ProblemStatus,
    RequestStatus,
    SettlementOutcome,
    StripeEvent,
    StripeEventStatus,
    TransferState,
)
from app.services.sweeping import SweepStep
from tasks import maintenance
from tests.call_helpers import accepted_call
from tests.factories import CallRequestFactory, UserFactory

PROBED = [step for step in maintenance.SWEEP_STEPS if step in maintenance.SWEEP_QUESTION.probed]


def step_name(step: SweepStep) -> str:
    return f"{step.__module__.rsplit('.', 1)[-1]}.{step.__name__}"


# --- The work each step looks for, and the moment the sweep runs -------------------------------


def overdue_call(session: Session, now: datetime) -> datetime:
    call = accepted_call(now=now - timedelta(minutes=10))
    call.started_at, call.ends_at = now - timedelta(minutes=8), now - timedelta(minutes=3)
    return now


def never_started(session: Session, now: datetime) -> datetime:
    accepted_call(now=now - timedelta(minutes=20), join_window_seconds=600)
    return now


def room_never_made(session: Session, now: datetime) -> datetime:
    accepted_call(now=now, room=None)
    return now + timedelta(minutes=1)


def room_left_open(session: Session, now: datetime) -> datetime:
    call = accepted_call(now=now - timedelta(minutes=10))
    call.status, call.started_at, call.ended_at = RequestStatus.COMPLETED, now - timedelta(minutes=8), now
    call.ends_at = now
    return now + timedelta(minutes=1)


def refund_not_given(session: Session, now: datetime) -> datetime:
    call = accepted_call(now=now - timedelta(minutes=10), room=None)
    call.status, call.started_at, call.ended_at = RequestStatus.COMPLETED, now - timedelta(minutes=8), now
    call.ends_at = now
    session.add(
        CallSettlement(
            call_request_id=call.id,
            outcome=SettlementOutcome.SELLER_ENDED_EARLY,
            connected_seconds=60,
            gross_cents=1000,
            refund_cents=500,
            fee_cents=100,
            net_cents=400,
            currency="usd",
        )
    )
    return now + timedelta(minutes=1)


def email_unsent(session: Session, now: datetime) -> datetime:
    session.add(OutboxEmail(recipient="buyer@example.org", template="request_created"))
    return now + timedelta(minutes=2)


def request_unanswered(session: Session, now: datetime) -> datetime:
    CallRequestFactory(expires_at=now + timedelta(hours=1))
    return now + timedelta(hours=2)


def reminder_due(session: Session, now: datetime) -> datetime:
    call = accepted_call(now=now, join_window_seconds=3 * 86400)
    call.scheduled_start, call.next_reminder_at = now + timedelta(days=2), now + timedelta(days=1)
    return now + timedelta(days=1, seconds=1)


def capture_lost(session: Session, now: datetime) -> datetime:
    accepted_call(now=now, payment_state=PaymentState.HELD)
    return now + timedelta(minutes=3)


def release_lost(session: Session, now: datetime) -> datetime:
    CallRequestFactory(status=RequestStatus.DECLINED, declined_at=now)
    return now + timedelta(minutes=3)


def cancellation_release_lost(session: Session, now: datetime) -> datetime:
    CallRequestFactory(status=RequestStatus.CANCELLED, cancel_reason=CancelReason.EXPIRED, cancelled_at=now)
    return now + timedelta(minutes=3)


def stripe_event_stuck(session: Session, now: datetime) -> datetime:
    session.add(StripeEvent(stripe_event_id=f"evt_{key()}", type="checkout.session.completed", payload={}))
    return now + timedelta(minutes=2)


def daily_event_stuck(session: Session, now: datetime) -> datetime:
    session.add(DailyEvent(daily_event_id=key(), type="participant.joined", payload={}))
    return now + timedelta(minutes=2)


def problem_refund_lost(session: Session, now: datetime) -> datetime:
    call = CallRequestFactory(status=RequestStatus.COMPLETED)
    session.add(
        ProblemCase(
            call_request_id=call.id,
            party="buyer",
            reason=ProblemReason.NO_CONNECTION,
            status=ProblemStatus.REFUNDED,
            refund_cents=300,
            resolved_at=now,
        )
    )
    return now + timedelta(minutes=2)


def transfer_stuck(session: Session, now: datetime) -> datetime:
    seller = UserFactory()
    payout = PayoutRequest(seller_id=seller.id, amount_cents=2500, currency="usd")
    session.add(payout)
    session.flush()
    session.add(
        PayoutTransfer(
            payout_request_id=payout.id,
            seller_id=seller.id,
            destination="acct_test",
            amount_cents=2500,
            currency="usd",
            idempotency_key=f"transfer:{payout.id}",
            transfer_group=f"payout:{payout.id}",
        )
    )
    return now + timedelta(minutes=3)


def farewell_delivered(session: Session, now: datetime) -> datetime:
    session.add(
        OutboxEmail(
            recipient="gone@example.org",
            template="account_deleted",
            context={"user_id": str(uuid.uuid4())},
            status=EmailStatus.SENT,
        )
    )
    return now


def photo_deletion_lost(session: Session, now: datetime) -> datetime:
    session.add(PhotoDeletion(profile_id=uuid.uuid4(), next_attempt_at=now))
    return now + timedelta(seconds=1)


def key() -> str:
    return secrets.token_hex(8)


Scenario = Callable[[Session, datetime], datetime]
SCENARIOS: list[tuple[str, Scenario]] = [
    ("clock.end_overdue_calls", overdue_call),
    ("clock.apply_no_shows", never_started),
    ("call_endings.recover_call_work", room_never_made),
    ("call_endings.recover_call_work", room_left_open),
    ("call_endings.recover_call_work", refund_not_given),
    ("email_delivery.requeue_due_emails", email_unsent),
    ("decisions.expire_pending_requests", request_unanswered),
    ("schedule.send_due_reminders", reminder_due),
    ("request_payments.payment_followups", capture_lost),
    ("request_payments.payment_followups", release_lost),
    ("request_payments.payment_followups", cancellation_release_lost),
    ("stripe_events.requeue_stuck_events", stripe_event_stuck),
    ("daily_events.requeue_stuck_events", daily_event_stuck),
    ("problems.recover_problem_refunds", problem_refund_lost),
    ("transfers.resend_stuck_transfers", transfer_stuck),
    ("privacy.scrub_farewell_emails", farewell_delivered),
    ("photos.requeue_photo_deletions", photo_deletion_lost),
]


# --- Tests --------------------------------------------------------------------------------------


def test_every_probed_step_has_a_scenario() -> None:
    assert {name for name, _ in SCENARIOS} == {step_name(step) for step in PROBED}


@pytest.fixture
def quiet(db_session: Session) -> Session:
    """No work left over from other tests: everything a step could look at is settled."""
    db_session.execute(update(OutboxEmail).values(status=EmailStatus.SENT, recipient="x@invalid"))
    db_session.execute(update(StripeEvent).values(status=StripeEventStatus.PROCESSED))
    db_session.execute(update(DailyEvent).values(status=DailyEventStatus.PROCESSED))
    db_session.execute(update(PhotoDeletion).values(done_at=utcnow()))
    db_session.execute(update(PayoutTransfer).values(state=TransferState.SENT))
    db_session.execute(update(ProblemCase).values(refund_done_at=utcnow()))
    db_session.execute(update(CallSettlement).values(refund_done_at=utcnow()))
    db_session.execute(
        update(CallRequest)
        .where(CallRequest.status.in_((RequestStatus.PENDING, RequestStatus.ACCEPTED)))
        .values(status=RequestStatus.COMPLETED)
    )
    db_session.execute(update(CallRequest).values(room_deleted_at=utcnow(), next_reminder_at=None))
    return db_session


def findings(session: Session, at: datetime, settings) -> dict[str, bool]:  # type: ignore[no-untyped-def]
    """For every probed step: whether it finds work at ``at``, each in a savepoint rolled back."""
    found = {}
    for step in PROBED:
        savepoint = session.begin_nested()
        found[step_name(step)] = any(step(session, at, settings).values())
        savepoint.rollback()
    return found


def test_with_nothing_to_do_no_probed_step_is_named_or_finds_anything(quiet, settings) -> None:  # type: ignore[no-untyped-def]
    due, gauges = maintenance.SWEEP_QUESTION.ask(quiet, utcnow())

    assert [step_name(step) for step in due] == ["builtin_payments.expire_builtin_checkouts"]  # it has no probe
    assert gauges == {"inbox_pending": 0, "outbox_pending": 0}
    assert not any(findings(quiet, utcnow(), settings).values())


@pytest.mark.parametrize(("name", "scenario"), SCENARIOS, ids=[scenario.__name__ for _, scenario in SCENARIOS])
def test_the_question_names_every_step_that_has_work(quiet, settings, enqueued, name, scenario) -> None:  # type: ignore[no-untyped-def]
    at = scenario(quiet, utcnow())
    quiet.flush()

    due = {step_name(step) for step in maintenance.SWEEP_QUESTION.ask(quiet, at)[0]}
    found = findings(quiet, at, settings)

    assert name in due and found[name], f"{name}: named {name in due}, found work {found[name]}"
    missed = [step for step, has_work in found.items() if has_work and step not in due]
    assert missed == [], f"steps with work the question did not name: {missed}"


def test_the_sweep_runs_only_the_named_steps_and_reports_the_gauges(quiet, app, enqueued, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    request_unanswered(quiet, utcnow() - timedelta(hours=2))
    quiet.flush()
    ran: list[str] = []
    monkeypatch.setattr(maintenance, "_run", lambda steps, settings: ran.extend(map(step_name, steps)) or {})

    with app.app_context():
        report = maintenance.sweep()

    assert ran == ["decisions.expire_pending_requests", "builtin_payments.expire_builtin_checkouts"]
    assert report == {"inbox_pending": 0, "outbox_pending": 0}


def test_a_question_that_fails_runs_every_step(quiet, app, enqueued, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    call = accepted_call(now=utcnow() - timedelta(minutes=10))
    call.started_at, call.ends_at = utcnow() - timedelta(minutes=8), utcnow() - timedelta(minutes=3)
    quiet.flush()

    def broken(session: Session, now: datetime) -> None:
        raise RuntimeError("the question's SQL is wrong")

    monkeypatch.setattr(maintenance.SWEEP_QUESTION, "ask", broken)
    with app.app_context():
        report = maintenance.sweep()

    assert report["calls_ended_by_sweep"] == 1
    assert "requests_expired" in report  # every step ran, each reporting
    quiet.expire_all()
    assert quiet.get(CallRequest, call.id).status is RequestStatus.COMPLETED
