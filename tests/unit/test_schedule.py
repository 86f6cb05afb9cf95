"""A call at a time that suits both, through the lifecycle, with the clock frozen at each step:
propose → accept one time (capture at once) → reminders at their instants → the room opens a few
minutes before → completion or a no-show counted from the start; one reschedule; the buyer's
cancellation before and after the notice; expiry once every proposed time passed; a hold about to
reach its capture_before. Each move is checked to be repeat-safe."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import vobject
from freezegun import freeze_time
from sqlalchemy import select, update

from app.db import utcnow
from app.integrations.video import BuiltinVideo
from app.models import (
    CallRequest,
    CancelReason,
    EmailStatus,
    LedgerEntry,
    LedgerKind,
    OutboxEmail,
    PaymentState,
    RequestStatus,
)
from app.refusals import Conflict, Forbidden, Invalid
from app.services import calls, media_presence
from app.services.availability import parse_weekly, save_availability
from app.services.calls import CallAccess, CallConfig
from app.services.lifecycle import clock, load_request, schedule
from app.services.lifecycle.decisions import accept_request, expire_pending_requests, open_request
from app.services.request_payments import capture_accepted_payment, release_payment
from app.services.scheduling import ScheduleConfig
from tests.call_helpers import FakeGateway
from tests.factories import ProfileFactory, TransactionFactory

CAPTURE = "tasks.request_payments.capture_accepted"
RELEASE = "tasks.request_payments.release_hold"

# The seller works from New York (UTC-5 in December), the buyer pays from Paris (UTC+1).
TUESDAY_START = datetime(2026, 12, 8, 14, 0, tzinfo=UTC)  # 09:00 in New York, 15:00 in Paris
WEDNESDAY_START = datetime(2026, 12, 9, 15, 0, tzinfo=UTC)
MONDAY_NOON = "2026-12-07 12:00:00"


@pytest.fixture
def config(settings) -> ScheduleConfig:  # type: ignore[no-untyped-def]
    return ScheduleConfig.from_settings(settings)


def at(value: datetime | str):  # type: ignore[no-untyped-def]
    return freeze_time(value)


def booked_request(session, *, capture_before: datetime | None = None, proposed=(TUESDAY_START, WEDNESDAY_START)):  # type: ignore[no-untyped-def]
    """A paid PENDING request with proposed times, as the webhook opens it (frozen at Monday noon)."""
    profile = ProfileFactory(display_name="Ada Lovelace")
    weekdays = [{"day": d, "from": "08:00", "to": "18:00"} for d in ("mon", "tue", "wed", "thu", "fri")]
    with at(MONDAY_NOON):
        save_availability(
            session,
            profile.user_id,
            now=utcnow(),
            idle_seconds=1800,
            time_zone="America/New_York",
            weekly=parse_weekly(weekdays),
        )
        transaction = TransactionFactory(seller=profile.user, payment_state=PaymentState.HELD)
        request = open_request(
            session,
            seller_id=profile.user_id,
            transaction_id=transaction.id,
            buyer_email=transaction.buyer_email,
            note="About pricing",
            refused=None,
            request_ttl_seconds=86400,
            now=utcnow(),
            proposed_starts=list(proposed),
            buyer_time_zone="Europe/Paris",
            capture_before=capture_before,
        )
    return request


def accepted_for_tuesday(session, config, enqueued, *, when: str = "2026-12-07 12:30:00"):  # type: ignore[no-untyped-def]
    """Booked for Tuesday and captured, as the seller's accept and its task leave it."""
    request = booked_request(session)
    with at(when):
        accept_request(
            session,
            request.id,
            seller_id=request.seller_id,
            now=utcnow(),
            join_window_seconds=900,
            start_at=TUESDAY_START,
            schedule=config,
        )
        assert capture_accepted_payment(session, request.id, gateway=FakeGateway(), now=utcnow()) == "captured"
    return reload(session, request)


def reload(session, request) -> CallRequest:  # type: ignore[no-untyped-def]
    found = load_request(session, request.id)
    assert found is not None
    return found


def emails(session, request, template_prefix: str = "") -> list[OutboxEmail]:  # type: ignore[no-untyped-def]
    rows = session.scalars(
        select(OutboxEmail)
        .where(OutboxEmail.context["request_id"].astext == str(request.id))
        .order_by(OutboxEmail.created_at)
    ).all()
    return [row for row in rows if row.template.startswith(template_prefix)]


def ics_of(email: OutboxEmail):  # type: ignore[no-untyped-def]
    [attachment] = email.context["attachments"]
    return vobject.readOne(base64.b64decode(attachment["content"]).decode())


def sweep_reminders(session, settings, when: datetime | str) -> int:  # type: ignore[no-untyped-def]
    with at(when):
        return schedule.send_due_reminders(session, utcnow(), settings)["reminders_sent"]


def both_present(session, request, when: datetime) -> None:  # type: ignore[no-untyped-def]
    """Both in the room, and their media connected (their pages' reports)."""
    session.execute(
        update(CallRequest)
        .where(CallRequest.id == request.id)
        .values(buyer_present=True, seller_present=True, buyer_joined_at=when, seller_joined_at=when)
    )
    for party in ("buyer", "seller"):
        media_presence.page_connected(session, request.id, party, f"{party}-window", when)


class TestProposeAndAccept:
    def test_the_request_keeps_the_times_and_expires_after_the_last(self, db_session) -> None:  # type: ignore[no-untyped-def]
        request = booked_request(db_session)
        assert request.proposed_starts == [TUESDAY_START, WEDNESDAY_START]
        assert request.buyer_time_zone == "Europe/Paris"
        assert request.expires_at == WEDNESDAY_START

    def test_accepting_one_time_books_it_and_captures_at_once(self, db_session, config, enqueued) -> None:  # type: ignore[no-untyped-def]
        request = booked_request(db_session)
        with at("2026-12-07 12:30:00"):
            accepted = accept_request(
                db_session,
                request.id,
                seller_id=request.seller_id,
                now=utcnow(),
                join_window_seconds=900,
                start_at=TUESDAY_START,
                schedule=config,
            )
        db_session.commit()
        assert accepted.status is RequestStatus.ACCEPTED
        assert accepted.scheduled_start == TUESDAY_START
        assert accepted.join_opens_at == TUESDAY_START - timedelta(minutes=5)
        assert accepted.join_deadline == TUESDAY_START + timedelta(minutes=15)
        assert accepted.next_reminder_at == TUESDAY_START - timedelta(hours=24)
        assert (CAPTURE, (str(request.id),), {}) in enqueued
        invites = {e.template: e for e in emails(db_session, request, "call_scheduled")}
        assert set(invites) == {"call_scheduled_buyer", "call_scheduled_seller"}
        # Each party reads the time in their own zone; both calendars get the same instant.
        assert invites["call_scheduled_buyer"].context["start_text"] == "Tuesday 8 December 2026, 15:00 (Europe/Paris)"
        assert invites["call_scheduled_seller"].context["start_text"].endswith("09:00 (America/New_York)")
        for email in invites.values():
            event = ics_of(email)
            assert event.method.value == "REQUEST" and int(event.vevent.sequence.value) == 0
            assert event.vevent.dtstart.value == TUESDAY_START
            assert email.context["google_url"].startswith("https://calendar.google.com/")

    def test_only_a_proposed_time_still_ahead(self, db_session, config) -> None:  # type: ignore[no-untyped-def]
        request = booked_request(db_session)

        def accept(start: datetime, when: str) -> None:
            with at(when):
                accept_request(
                    db_session,
                    request.id,
                    seller_id=request.seller_id,
                    now=utcnow(),
                    join_window_seconds=900,
                    start_at=start,
                    schedule=config,
                )

        with pytest.raises(Invalid) as refused:
            accept(TUESDAY_START + timedelta(minutes=30), "2026-12-07 12:30:00")
        assert refused.value.fields == {"startAt": refused.value.message}
        with pytest.raises(Conflict, match="passed"):
            accept(TUESDAY_START, "2026-12-08 14:01:00")
        accept(WEDNESDAY_START, "2026-12-08 14:01:00")
        with pytest.raises(Conflict, match="already accepted"):  # a second click
            accept(WEDNESDAY_START, "2026-12-08 14:02:00")
        assert len(emails(db_session, request, "call_scheduled")) == 2


class TestTheWholeSchedule:
    def test_reminders_at_their_instants_then_the_room_then_the_call(  # type: ignore[no-untyped-def]
        self, db_session, config, settings, enqueued
    ) -> None:
        request = accepted_for_tuesday(db_session, config, enqueued)
        day_before = TUESDAY_START - timedelta(hours=24)
        ten_before = TUESDAY_START - timedelta(minutes=10)

        assert sweep_reminders(db_session, settings, day_before - timedelta(seconds=1)) == 0
        assert sweep_reminders(db_session, settings, day_before) == 1
        assert sweep_reminders(db_session, settings, day_before + timedelta(seconds=5)) == 0
        assert sweep_reminders(db_session, settings, ten_before - timedelta(seconds=1)) == 0
        assert sweep_reminders(db_session, settings, ten_before) == 1
        assert sweep_reminders(db_session, settings, ten_before + timedelta(minutes=1)) == 0
        reminders = emails(db_session, request, "call_reminder")
        assert sorted((e.template, e.context["stage"]) for e in reminders) == [
            ("call_reminder_buyer", "10min"),
            ("call_reminder_buyer", "24h"),
            ("call_reminder_seller", "10min"),
            ("call_reminder_seller", "24h"),
        ]
        assert reload(db_session, request).next_reminder_at is None

        # The room: not before it opens (five minutes before the start), then made, without the
        # "join now" email of a call for right away (the invitation and reminders carry the link).
        call_config, video = CallConfig.from_settings(settings), BuiltinVideo(settings.app_url)
        opens = TUESDAY_START - timedelta(minutes=5)
        with at(opens - timedelta(seconds=1)):
            assert (
                calls.provision_room(db_session, request.id, provider=video, config=call_config, now=utcnow())
                == "not_yet"
            )
            access = CallAccess(reload(db_session, request), "buyer", ended=False)
            with pytest.raises(Conflict, match="not open"):
                calls.prepare_room(db_session, access, provider=video, config=call_config, now=utcnow())
        with at(opens):
            assert (
                calls.provision_room(db_session, request.id, provider=video, config=call_config, now=utcnow())
                == "created"
            )
        assert emails(db_session, request, "call_ready") == []

        # Both in a minute after the start: the clock starts then, and the call runs its length.
        started = TUESDAY_START + timedelta(minutes=1)
        both_present(db_session, request, started)
        with at(started):
            ends_at = clock.start_when_connected(db_session, request.id, now=utcnow(), duration_seconds=300)
        assert ends_at == started + timedelta(seconds=300)
        with at(ends_at):
            assert clock.complete_call(db_session, request.id, ended_by="timer", config=call_config, now=utcnow())
        assert reload(db_session, request).status is RequestStatus.COMPLETED

    def test_no_show_counts_from_the_scheduled_start(self, db_session, config, settings, enqueued) -> None:  # type: ignore[no-untyped-def]
        request = accepted_for_tuesday(db_session, config, enqueued)
        seller_in = TUESDAY_START - timedelta(minutes=2)
        db_session.execute(update(CallRequest).where(CallRequest.id == request.id).values(seller_joined_at=seller_in))
        deadline = TUESDAY_START + timedelta(minutes=15)
        with at(deadline - timedelta(seconds=1)):
            assert clock.apply_no_shows(db_session, utcnow(), settings)["buyer_no_shows"] == 0
        with at(deadline):
            assert clock.apply_no_shows(db_session, utcnow(), settings)["buyer_no_shows"] == 1
        done = reload(db_session, request)
        assert done.cancel_reason is CancelReason.BUYER_NO_SHOW
        assert (
            db_session.scalar(select(LedgerEntry).where(LedgerEntry.call_request_id == request.id)).kind
            is LedgerKind.EARNING
        )


class TestReschedule:
    def test_asked_once_confirmed_by_the_other_and_every_trace_moves(  # type: ignore[no-untyped-def]
        self, db_session, config, settings, enqueued
    ) -> None:
        request = accepted_for_tuesday(db_session, config, enqueued)
        assert sweep_reminders(db_session, settings, TUESDAY_START - timedelta(hours=24)) == 1
        new_start = WEDNESDAY_START + timedelta(hours=2)  # 12:00 in New York: in the seller's hours
        with at("2026-12-07 15:00:00"):
            asked = schedule.ask_reschedule(db_session, request, "buyer", new_start, config=config, now=utcnow())
        assert asked.reschedule_start == new_start and asked.scheduled_start == TUESDAY_START
        [question] = emails(db_session, request, "reschedule_asked")
        assert (
            question.template == "reschedule_asked_seller" and "America/New_York" in question.context["new_start_text"]
        )

        with at("2026-12-07 15:01:00"), pytest.raises(Forbidden):
            schedule.answer_reschedule(db_session, asked, "buyer", accept=True, config=config, now=utcnow())
        with at("2026-12-07 16:00:00"):
            moved = schedule.answer_reschedule(db_session, asked, "seller", accept=True, config=config, now=utcnow())
        assert moved.scheduled_start == new_start
        assert moved.join_opens_at == new_start - timedelta(minutes=5)
        assert moved.join_deadline == new_start + timedelta(minutes=15)
        assert moved.next_reminder_at == new_start - timedelta(hours=24)
        assert moved.schedule_sequence == 1
        updates = emails(db_session, request, "call_rescheduled")
        assert {e.template for e in updates} == {"call_rescheduled_buyer", "call_rescheduled_seller"}
        for email in updates:
            event = ics_of(email)
            assert int(event.vevent.sequence.value) == 1 and event.vevent.dtstart.value == new_start
            assert event.vevent.uid.value == ics_of(emails(db_session, request, "call_scheduled")[0]).vevent.uid.value
        # The reminders of the old time that had not gone out yet are withdrawn.
        assert {e.status for e in emails(db_session, request, "call_reminder")} == {EmailStatus.WITHDRAWN}

        with at("2026-12-07 16:30:00"), pytest.raises(Conflict, match="once"):
            schedule.ask_reschedule(
                db_session, moved, "seller", new_start + timedelta(hours=1), config=config, now=utcnow()
            )
        with at("2026-12-07 16:31:00"), pytest.raises(Conflict):  # answered already: a repeat changes nothing
            schedule.answer_reschedule(db_session, moved, "seller", accept=True, config=config, now=utcnow())
        assert reload(db_session, request).schedule_sequence == 1

    def test_kept_time_and_a_buyer_outside_the_hours(self, db_session, config, enqueued) -> None:  # type: ignore[no-untyped-def]
        request = accepted_for_tuesday(db_session, config, enqueued)
        with at("2026-12-07 15:00:00"), pytest.raises(Invalid, match="hours"):
            saturday = datetime(2026, 12, 12, 15, tzinfo=UTC)
            schedule.ask_reschedule(db_session, request, "buyer", saturday, config=config, now=utcnow())
        with at("2026-12-07 15:00:00"):  # the seller may offer any time
            asked = schedule.ask_reschedule(
                db_session, request, "seller", datetime(2026, 12, 12, 15, tzinfo=UTC), config=config, now=utcnow()
            )
            kept = schedule.answer_reschedule(db_session, asked, "buyer", accept=False, config=config, now=utcnow())
        assert kept.scheduled_start == TUESDAY_START and kept.schedule_sequence == 0
        assert [e.template for e in emails(db_session, request, "reschedule_declined")] == [
            "reschedule_declined_seller"
        ]

    def test_not_once_the_room_is_open(self, db_session, config, enqueued) -> None:  # type: ignore[no-untyped-def]
        request = accepted_for_tuesday(db_session, config, enqueued)
        with at(TUESDAY_START - timedelta(minutes=5)), pytest.raises(Conflict, match="open"):
            schedule.ask_reschedule(db_session, request, "seller", WEDNESDAY_START, config=config, now=utcnow())


class TestBuyerCancels:
    def test_in_time_is_a_full_refund_and_the_calendar_is_cleared(  # type: ignore[no-untyped-def]
        self, db_session, config, settings, enqueued
    ) -> None:
        request = accepted_for_tuesday(db_session, config, enqueued)
        notice_ends = TUESDAY_START - timedelta(hours=24)
        with at(notice_ends):
            cancelled = schedule.cancel_by_buyer(db_session, request, config=config, now=utcnow())
        db_session.commit()
        assert cancelled.status is RequestStatus.CANCELLED
        assert cancelled.cancel_reason is CancelReason.BUYER_CANCELLED
        assert (RELEASE, (str(request.id),), {}) in enqueued
        gateway = FakeGateway()
        with at(notice_ends + timedelta(seconds=2)):
            assert release_payment(db_session, request.id, gateway=gateway, now=utcnow()) == "refunded"
            assert release_payment(db_session, request.id, gateway=gateway, now=utcnow()) == "unchanged"
        assert gateway.calls == [
            ("refund", reload(db_session, request).transaction.stripe_payment_intent_id, f"refund:{request.id}")
        ]
        notices = emails(db_session, request, "call_cancelled")
        assert {e.template for e in notices} == {"call_cancelled_buyer", "call_cancelled_seller"}
        for email in notices:
            event = ics_of(email)
            assert event.method.value == "CANCEL" and int(event.vevent.sequence.value) == 1
        # No reminder for a cancelled call, not even the one that was due a second later.
        assert sweep_reminders(db_session, settings, notice_ends + timedelta(seconds=1)) == 0
        assert emails(db_session, request, "call_reminder") == []
        with at(notice_ends + timedelta(minutes=1)), pytest.raises(Conflict):
            schedule.cancel_by_buyer(db_session, cancelled, config=config, now=utcnow())

    def test_inside_the_notice_follows_the_no_show_rule(self, db_session, config, enqueued) -> None:  # type: ignore[no-untyped-def]
        request = accepted_for_tuesday(db_session, config, enqueued)
        with at(TUESDAY_START - timedelta(hours=24) + timedelta(seconds=1)):
            cancelled = schedule.cancel_by_buyer(db_session, request, config=config, now=utcnow())
        assert cancelled.cancel_reason is CancelReason.BUYER_NO_SHOW
        assert cancelled.transaction.payment_state is PaymentState.CAPTURED
        db_session.commit()
        assert (RELEASE, (str(request.id),), {}) not in enqueued
        [earning] = db_session.scalars(select(LedgerEntry).where(LedgerEntry.call_request_id == request.id)).all()
        assert earning.kind is LedgerKind.EARNING and earning.amount_cents == cancelled.transaction.net_cents
        assert {e.template for e in emails(db_session, request, "call_cancelled_late")} == {
            "call_cancelled_late_buyer",
            "call_cancelled_late_seller",
        }

    def test_only_the_buyer_and_only_a_booked_call(self, db_session, config, enqueued) -> None:  # type: ignore[no-untyped-def]
        request = booked_request(db_session)
        with at("2026-12-07 12:30:00"):
            now_call = accept_request(
                db_session, request.id, seller_id=request.seller_id, now=utcnow(), join_window_seconds=900
            )
            with pytest.raises(Conflict, match="later time"):
                schedule.cancel_by_buyer(db_session, now_call, config=config, now=utcnow())


class TestExpiry:
    def test_a_request_whose_times_all_passed_expires_with_the_hold_released(  # type: ignore[no-untyped-def]
        self, db_session, settings, enqueued
    ) -> None:
        request = booked_request(db_session)
        with at(WEDNESDAY_START - timedelta(seconds=1)):
            assert expire_pending_requests(db_session, utcnow(), settings)["requests_expired"] == 0
        with at(WEDNESDAY_START):
            assert expire_pending_requests(db_session, utcnow(), settings)["requests_expired"] == 1
        db_session.commit()
        assert reload(db_session, request).cancel_reason is CancelReason.EXPIRED
        assert (RELEASE, (str(request.id),), {}) in enqueued
        with at(WEDNESDAY_START + timedelta(seconds=1)):
            assert release_payment(db_session, request.id, gateway=FakeGateway(), now=utcnow()) == "voided"

    def test_a_hold_about_to_reach_capture_before_is_decided_or_released_in_time(  # type: ignore[no-untyped-def]
        self, db_session, config, settings, enqueued
    ) -> None:
        capture_before = datetime(2026, 12, 9, 12, 0, tzinfo=UTC)  # before Wednesday's proposed time
        request = booked_request(db_session, capture_before=capture_before)
        assert request.expires_at == capture_before - timedelta(hours=1)
        other = booked_request(db_session, capture_before=capture_before)

        with at(capture_before - timedelta(hours=1, seconds=1)):  # still in time: accepted and captured
            accept_request(
                db_session,
                other.id,
                seller_id=other.seller_id,
                now=utcnow(),
                join_window_seconds=900,
                start_at=WEDNESDAY_START,
                schedule=config,
            )
            assert capture_accepted_payment(db_session, other.id, gateway=FakeGateway(), now=utcnow()) == "captured"
        with at(capture_before - timedelta(hours=1)):
            with pytest.raises(Conflict, match="expired"):  # the seller a moment too late
                accept_request(
                    db_session,
                    request.id,
                    seller_id=request.seller_id,
                    now=utcnow(),
                    join_window_seconds=900,
                    start_at=WEDNESDAY_START,
                    schedule=config,
                )
            assert expire_pending_requests(db_session, utcnow(), settings)["requests_expired"] == 1
        assert reload(db_session, request).cancel_reason is CancelReason.EXPIRED
        assert reload(db_session, other).transaction.payment_state is PaymentState.CAPTURED


def test_an_asap_request_is_exactly_as_before(db_session, settings) -> None:  # type: ignore[no-untyped-def]
    transaction = TransactionFactory()
    with at(MONDAY_NOON):
        request = open_request(
            db_session,
            seller_id=transaction.seller_id,
            transaction_id=transaction.id,
            buyer_email=transaction.buyer_email,
            note="",
            refused=None,
            request_ttl_seconds=86400,
            now=utcnow(),
        )
        accepted = accept_request(
            db_session, request.id, seller_id=request.seller_id, now=utcnow(), join_window_seconds=900
        )
    assert request.expires_at == datetime(2026, 12, 8, 12, tzinfo=UTC)
    assert accepted.scheduled_start is None and accepted.next_reminder_at is None
    assert accepted.join_opens_at == accepted.accepted_at
    assert accepted.join_deadline == accepted.accepted_at + timedelta(seconds=900)
    assert emails(db_session, request, "call_scheduled") == []
    assert uuid.UUID(str(accepted.id))


def test_the_sweep_makes_the_room_only_once_it_opens(db_session, config, settings, enqueued) -> None:  # type: ignore[no-untyped-def]
    from app.services.call_endings import recover_call_work

    request = accepted_for_tuesday(db_session, config, enqueued)
    opens = TUESDAY_START - timedelta(minutes=5)
    with at(opens - timedelta(seconds=1)):
        assert recover_call_work(db_session, utcnow(), settings)["rooms_requeued"] == 0
    with at(opens + timedelta(seconds=30)):  # its grace after the opening, as for a call for right now
        assert recover_call_work(db_session, utcnow(), settings)["rooms_requeued"] == 1
    assert reload(db_session, request).room_ready_at is None
