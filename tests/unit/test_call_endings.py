"""How a call ends (app/services/call_endings.py): the timer, the seller, the sweep, the room's
deletion, the seller's earning, and the no-shows at the join deadline (with freezegun)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select

from app.db import utcnow
from app.integrations.payments import PaymentError
from app.integrations.video import BuiltinVideo, DailyVideo
from app.models import (
    CallRequest,
    CancelReason,
    EventLog,
    LedgerEntry,
    LedgerKind,
    OutboxEmail,
    PaymentState,
    RequestStatus,
    SettlementOutcome,
)
from app.refusals import Refusal
from app.services import call_endings, calls
from app.services.calls import CallConfig, RetryLater
from app.services.lifecycle import clock, settlement
from tests.call_helpers import SECRET_KEY, FakeGateway, accepted_call
from tests.fakes.daily_api import FakeDaily


@pytest.fixture
def config(settings) -> CallConfig:
    return CallConfig.from_settings(settings)


@pytest.fixture
def fake_daily() -> Iterator[FakeDaily]:
    with FakeDaily(api_key="daily-key") as fake:
        yield fake


@pytest.fixture
def daily(fake_daily) -> DailyVideo:
    return DailyVideo("daily-key", fake_daily.url, backoff_factor=0.01, backoff_max=0.05)


def started_call(session, *, started_at=None, duration=300, room="builtin"):  # type: ignore[no-untyped-def]
    started_at = started_at or utcnow()
    call = accepted_call(now=started_at - timedelta(seconds=60), room=room)
    call.buyer_joined_at = call.seller_joined_at = started_at
    call.buyer_present = call.seller_present = True
    call.started_at, call.ends_at = started_at, started_at + timedelta(seconds=duration)
    session.flush()
    return call


def reload(session, call):  # type: ignore[no-untyped-def]
    return session.get(CallRequest, call.id, populate_existing=True)


def earnings(session, call) -> list[LedgerEntry]:  # type: ignore[no-untyped-def]
    return list(session.scalars(select(LedgerEntry).where(LedgerEntry.call_request_id == call.id)))


def emails(session, call) -> dict[str, OutboxEmail]:  # type: ignore[no-untyped-def]
    rows = session.scalars(select(OutboxEmail).where(OutboxEmail.dedupe_key.like(f"%:{call.id}")))
    return {row.template: row for row in rows}


def events(session, call, type_: str) -> int:  # type: ignore[no-untyped-def]
    query = select(func.count()).select_from(EventLog).where(EventLog.ref_id == str(call.id), EventLog.type == type_)
    return session.scalar(query)


class TestEndCall:
    def test_the_timer_ends_the_call_and_pays_the_seller(self, db_session, config, enqueued) -> None:
        call = started_call(db_session)
        at_end = call.ends_at + timedelta(milliseconds=3)

        assert call_endings.end_call(db_session, call.id, ended_by="timer", config=config, now=at_end) == "ended"
        db_session.commit()

        call = reload(db_session, call)
        assert (call.status, call.ended_at, call.ended_by) == (RequestStatus.COMPLETED, at_end, "timer")
        [earning] = earnings(db_session, call)
        assert (earning.kind, earning.amount_cents, earning.currency) == (LedgerKind.EARNING, 800, "usd")
        assert earning.seller_id == call.seller_id
        sent = emails(db_session, call)
        assert set(sent) == {"call_completed_buyer", "call_completed_seller"}
        buyer_token = calls.join_token(SECRET_KEY, call, "buyer")
        assert sent["call_completed_buyer"].context["rate_url"] == f"{config.app_url}/rate/{call.id}?t={buyer_token}"
        assert sent["call_completed_buyer"].recipient == call.buyer_email
        assert ("tasks.call_endings.release_room", (str(call.id),), {}) in enqueued
        assert events(db_session, call, "call.ended") == 1

    def test_a_timer_that_wakes_early_changes_nothing(self, db_session, config) -> None:
        call = started_call(db_session)
        early = call.ends_at - timedelta(milliseconds=1)
        assert call_endings.end_call(db_session, call.id, ended_by="timer", config=config, now=early) == "not_due"
        assert reload(db_session, call).status == RequestStatus.ACCEPTED

    def test_repeated_end_call_is_a_no_op(self, db_session, config) -> None:
        call = started_call(db_session)
        first_end = call.ends_at
        call_endings.end_call(db_session, call.id, ended_by="timer", config=config, now=first_end)
        later = first_end + timedelta(seconds=5)

        assert call_endings.end_call(db_session, call.id, ended_by="sweep", config=config, now=later) == "unchanged"
        assert call_endings.end_call(db_session, call.id, ended_by="seller", config=config, now=later) == "unchanged"

        call = reload(db_session, call)
        assert (call.ended_at, call.ended_by) == (first_end, "timer")
        assert len(earnings(db_session, call)) == 1
        assert len(emails(db_session, call)) == 2
        assert events(db_session, call, "call.ended") == 1

    def test_a_call_that_never_started_is_not_ended_by_the_timer(self, db_session, config) -> None:
        call = accepted_call()
        later = utcnow() + timedelta(hours=1)
        assert call_endings.end_call(db_session, call.id, ended_by="sweep", config=config, now=later) == "unchanged"
        assert reload(db_session, call).status == RequestStatus.ACCEPTED

    def test_no_earning_when_the_money_was_not_collected(self, db_session, config) -> None:
        call = started_call(db_session)
        call.transaction.payment_state = PaymentState.DISPUTED
        db_session.flush()
        call_endings.end_call(db_session, call.id, ended_by="timer", config=config, now=call.ends_at)
        assert earnings(db_session, call) == []


class TestEndByParty:
    def access(self, session, call, party, now):  # type: ignore[no-untyped-def]
        token = calls.join_token(SECRET_KEY, call, party)
        return calls.check_access(session, str(call.id), token, secret_key=SECRET_KEY, now=now)

    def test_the_seller_may_end_early(self, db_session, config) -> None:
        call = started_call(db_session)
        now = call.started_at + timedelta(seconds=30)
        state = call_endings.end_by_party(
            db_session, self.access(db_session, call, "seller", now), config=config, now=now
        )
        assert state["status"] == "completed"
        assert (reload(db_session, call).ended_by, reload(db_session, call).ended_at) == ("seller", now)

    def test_the_buyer_may_end_early_and_still_pays_in_full(self, db_session, config, enqueued) -> None:
        call = started_call(db_session)
        now = call.started_at + timedelta(seconds=30)
        state = call_endings.end_by_party(
            db_session, self.access(db_session, call, "buyer", now), config=config, now=now
        )
        assert (state["status"], state["endedBy"]) == ("completed", "buyer")
        assert "you were charged $10.00" in state["outcome"]
        call = reload(db_session, call)
        assert (call.ended_by, call.settlement.outcome.value, call.settlement.refund_cents) == (
            "buyer",
            "buyer_ended",
            0,
        )
        [earning] = earnings(db_session, call)
        assert earning.amount_cents == call.transaction.net_cents  # paid in full
        assert "tasks.call_endings.refund_buyer" not in enqueued.names()

    def test_either_page_may_record_the_end_once_time_is_up(self, db_session, config) -> None:
        call = started_call(db_session)
        access = self.access(db_session, call, "buyer", call.ends_at - timedelta(seconds=1))
        call_endings.end_by_party(db_session, access, config=config, now=call.ends_at)
        assert reload(db_session, call).ended_by == "timer"

    def test_nothing_to_end_before_the_start(self, db_session, config) -> None:
        call = accepted_call()
        with pytest.raises(Refusal) as refused:
            call_endings.end_by_party(
                db_session, self.access(db_session, call, "seller", utcnow()), config=config, now=utcnow()
            )
        assert refused.value.code == "not_started"

    def test_ending_an_ended_call_answers_its_state(self, db_session, config) -> None:
        call = started_call(db_session)
        call_endings.end_call(db_session, call.id, ended_by="timer", config=config, now=call.ends_at)
        later = call.ends_at + timedelta(seconds=1)
        state = call_endings.end_by_party(
            db_session, self.access(db_session, call, "seller", later), config=config, now=later
        )
        assert state["status"] == "completed"
        assert reload(db_session, call).ended_by == "timer"


class TestReleaseRoom:
    def test_deletes_the_daily_room_once(self, db_session, config, daily, fake_daily) -> None:
        call = started_call(db_session, room="daily")
        fake_daily.rooms[call.room_name] = {"name": call.room_name, "url": "u", "config": {}}
        call_endings.end_call(db_session, call.id, ended_by="timer", config=config, now=call.ends_at)

        assert call_endings.release_room(db_session, call.id, provider=daily, now=call.ends_at) == "deleted"
        assert call_endings.release_room(db_session, call.id, provider=daily, now=call.ends_at) == "skipped"

        assert call.room_name not in fake_daily.rooms
        assert len(fake_daily.calls("DELETE")) == 1
        assert reload(db_session, call).room_deleted_at == call.ends_at

    def test_a_room_daily_already_removed_counts_as_deleted(self, db_session, config, daily, fake_daily) -> None:
        call = started_call(db_session, room="daily")
        call_endings.end_call(db_session, call.id, ended_by="timer", config=config, now=call.ends_at)
        assert call_endings.release_room(db_session, call.id, provider=daily, now=utcnow()) == "deleted"
        assert reload(db_session, call).room_deleted_at is not None

    def test_a_daily_outage_is_retried_and_the_call_stays_ended(self, db_session, config, daily, fake_daily) -> None:
        call = started_call(db_session, room="daily")
        call_endings.end_call(db_session, call.id, ended_by="timer", config=config, now=call.ends_at)
        fake_daily.fail_next(503, 503, 503, 503)
        with pytest.raises(RetryLater):
            call_endings.release_room(db_session, call.id, provider=daily, now=utcnow())
        call = reload(db_session, call)
        assert (call.status, call.room_deleted_at) == (RequestStatus.COMPLETED, None)

    def test_a_refusal_is_recorded_not_retried(self, db_session, config, daily, fake_daily) -> None:
        call = started_call(db_session, room="daily")
        call_endings.end_call(db_session, call.id, ended_by="timer", config=config, now=call.ends_at)
        fake_daily.fail_next(401)
        assert call_endings.release_room(db_session, call.id, provider=daily, now=utcnow()) == "failed"
        assert events(db_session, call, "call.room_delete_failed") == 1

    def test_an_overdue_room_goes_even_before_the_end_is_recorded(self, db_session, daily, fake_daily) -> None:
        call = started_call(db_session, room="daily")
        fake_daily.rooms[call.room_name] = {"name": call.room_name, "url": "u", "config": {}}
        assert call_endings.release_room(db_session, call.id, provider=daily, now=call.ends_at) == "deleted"
        assert call.room_name not in fake_daily.rooms

    def test_a_live_call_keeps_its_room(self, db_session, daily, fake_daily) -> None:
        call = started_call(db_session, room="daily")
        assert call_endings.release_room(db_session, call.id, provider=daily, now=utcnow()) == "skipped"
        assert fake_daily.requests == []

    def test_the_built_in_room_has_nothing_to_delete_at_a_vendor(self, db_session, config, settings) -> None:
        call = started_call(db_session)
        call_endings.end_call(db_session, call.id, ended_by="timer", config=config, now=call.ends_at)
        builtin = BuiltinVideo(settings.app_url)
        assert call_endings.release_room(db_session, call.id, provider=builtin, now=call.ends_at) == "deleted"


class TestNoShows:
    def sweep(self, session, settings):  # type: ignore[no-untyped-def]
        return clock.apply_no_shows(session, utcnow(), settings)

    def test_an_absent_seller_cancels_the_call_and_refunds_the_buyer(self, db_session, settings, enqueued) -> None:
        call = accepted_call()
        with freeze_time(call.join_deadline + timedelta(seconds=1)):
            assert self.sweep(db_session, settings) == {
                "buyer_no_shows": 0,
                "technical_failures": 0,
                "seller_no_shows": 1,
            }
            db_session.commit()
            now = utcnow()

        call = reload(db_session, call)
        assert (call.status, call.cancel_reason, call.cancelled_at) == (
            RequestStatus.CANCELLED,
            CancelReason.SELLER_NO_SHOW,
            now,
        )
        assert ("tasks.call_endings.refund_buyer", (str(call.id),), {}) in enqueued
        assert set(emails(db_session, call)) == {"seller_no_show_buyer", "seller_no_show_seller"}
        assert (call.settlement.refund_cents, call.settlement.fee_cents) == (call.transaction.gross_cents, 0)
        assert earnings(db_session, call) == []

    def test_an_absent_buyer_cancels_the_call_and_pays_the_seller(self, db_session, settings, enqueued) -> None:
        call = accepted_call()
        call.seller_joined_at = call.accepted_at + timedelta(minutes=1)
        db_session.flush()
        with freeze_time(call.join_deadline):
            self.sweep(db_session, settings)
            db_session.commit()

        call = reload(db_session, call)
        assert (call.status, call.cancel_reason) == (RequestStatus.CANCELLED, CancelReason.BUYER_NO_SHOW)
        [earning] = earnings(db_session, call)
        assert earning.amount_cents == call.transaction.net_cents
        assert set(emails(db_session, call)) == {"buyer_no_show_buyer", "buyer_no_show_seller"}
        assert "tasks.call_endings.refund_buyer" not in enqueued.names()
        assert ("tasks.call_endings.release_room", (str(call.id),), {}) in enqueued

    def test_a_buyer_who_waited_in_vain_is_refunded(self, db_session, settings) -> None:
        call = accepted_call()
        call.buyer_joined_at = call.accepted_at + timedelta(minutes=2)
        db_session.flush()
        with freeze_time(call.join_deadline + timedelta(minutes=5)):
            self.sweep(db_session, settings)
        assert reload(db_session, call).cancel_reason == CancelReason.SELLER_NO_SHOW

    def test_both_came_but_media_never_connected_is_a_technical_failure(self, db_session, settings, enqueued) -> None:
        call = accepted_call()
        call.seller_joined_at = call.accepted_at + timedelta(minutes=1)
        call.buyer_joined_at = call.accepted_at + timedelta(minutes=12)
        db_session.flush()
        with freeze_time(call.join_deadline):
            assert self.sweep(db_session, settings)["technical_failures"] == 1
            db_session.commit()
        call = reload(db_session, call)
        assert call.cancel_reason == CancelReason.TECHNICAL_FAILURE
        settled = call.settlement
        assert (settled.outcome.value, settled.refund_cents, settled.fee_cents, settled.net_cents) == (
            "technical_failure",
            call.transaction.gross_cents,
            0,
            0,
        )
        assert earnings(db_session, call) == []
        assert ("tasks.call_endings.refund_buyer", (str(call.id),), {}) in enqueued
        sent = emails(db_session, call)
        assert set(sent) == {"technical_failure_buyer", "technical_failure_seller"}
        assert "the video never connected between you" in sent["technical_failure_buyer"].context["outcome_text"]
        assert "/problem?t=" in sent["technical_failure_seller"].context["problem_url"]

    def test_nothing_happens_before_the_deadline(self, db_session, settings) -> None:
        call = accepted_call()
        with freeze_time(call.join_deadline - timedelta(seconds=1)):
            assert set(self.sweep(db_session, settings).values()) == {0}
        assert reload(db_session, call).status == RequestStatus.ACCEPTED

    def test_a_started_call_is_never_a_no_show(self, db_session, settings) -> None:
        call = started_call(db_session)
        with freeze_time(call.join_deadline + timedelta(hours=1)):
            self.sweep(db_session, settings)
        assert reload(db_session, call).cancel_reason is None

    def test_a_second_sweep_changes_nothing(self, db_session, settings) -> None:
        call = accepted_call()
        with freeze_time(call.join_deadline + timedelta(seconds=1)):
            self.sweep(db_session, settings)
        with freeze_time(call.join_deadline + timedelta(seconds=6)):
            assert set(self.sweep(db_session, settings).values()) == {0}
        assert len(emails(db_session, call)) == 2

    def test_the_beat_sweep_applies_them(self, db_session, settings, enqueued) -> None:
        from tasks.maintenance import sweep

        call = accepted_call()
        with freeze_time(call.join_deadline + timedelta(seconds=2)):
            report = sweep()
        assert report["seller_no_shows"] == 1
        assert reload(db_session, call).cancel_reason == CancelReason.SELLER_NO_SHOW


class TestBuyerRefund:
    def seller_no_show(self, session, state=PaymentState.CAPTURED, reason=CancelReason.SELLER_NO_SHOW):  # type: ignore[no-untyped-def]
        call = accepted_call(payment_state=state)
        call.status, call.cancel_reason, call.cancelled_at = RequestStatus.CANCELLED, reason, utcnow()
        session.flush()
        settlement.settle(session, call.id, SettlementOutcome(reason.value), minimum_seconds=0, now=utcnow())
        return call

    def test_refunds_a_captured_payment_once(self, db_session) -> None:
        call = self.seller_no_show(db_session)
        gateway, now = FakeGateway(), utcnow()

        assert call_endings.refund_buyer(db_session, call.id, gateway=gateway, now=now) == "refunded"
        assert call_endings.refund_buyer(db_session, call.id, gateway=gateway, now=now) == "unchanged"

        intent = call.transaction.stripe_payment_intent_id
        assert gateway.calls == [("refund", intent, f"refund:{call.id}")]
        transaction = reload(db_session, call).transaction
        db_session.refresh(transaction)
        assert (transaction.payment_state, transaction.refunded_cents, transaction.refunded_at) == (
            PaymentState.REFUNDED,
            transaction.gross_cents,
            now,
        )
        assert events(db_session, call, "payment.refunded") == 1

    def test_a_hold_never_captured_is_released_instead(self, db_session) -> None:
        call = self.seller_no_show(db_session, PaymentState.HELD)
        gateway = FakeGateway()
        assert call_endings.refund_buyer(db_session, call.id, gateway=gateway, now=utcnow()) == "voided"
        assert gateway.calls == [("cancel", call.transaction.stripe_payment_intent_id, f"cancel:{call.id}")]

    def test_a_gateway_outage_is_retried_with_the_same_key(self, db_session) -> None:
        call = self.seller_no_show(db_session)
        gateway = FakeGateway(errors=[PaymentError("503", transient=True)])
        with pytest.raises(RetryLater):
            call_endings.refund_buyer(db_session, call.id, gateway=gateway, now=utcnow())
        assert call_endings.refund_buyer(db_session, call.id, gateway=gateway, now=utcnow()) == "refunded"
        assert {key for _, _, key in gateway.calls} == {f"refund:{call.id}"}

    def test_a_refusal_is_left_for_an_operator(self, db_session, settings) -> None:
        call = self.seller_no_show(db_session)
        gateway = FakeGateway(errors=[PaymentError("no", transient=False, code="card_declined")])
        assert call_endings.refund_buyer(db_session, call.id, gateway=gateway, now=utcnow()) == "failed"
        assert events(db_session, call, "payment.refund_failed") == 1
        later = utcnow() + timedelta(minutes=5)
        assert call_endings.recover_call_work(db_session, later, settings)["refunds_requeued"] == 0

    def test_already_refunded_at_the_gateway_is_a_refund(self, db_session) -> None:
        call = self.seller_no_show(db_session)
        gateway = FakeGateway(errors=[PaymentError("done", transient=False, code="charge_already_refunded")])
        assert call_endings.refund_buyer(db_session, call.id, gateway=gateway, now=utcnow()) == "refunded"

    def test_a_buyer_no_show_has_nothing_to_refund(self, db_session) -> None:
        call = self.seller_no_show(db_session, reason=CancelReason.BUYER_NO_SHOW)
        gateway = FakeGateway()
        assert call_endings.refund_buyer(db_session, call.id, gateway=gateway, now=utcnow()) == "skipped"
        assert gateway.calls == []


class TestSweeps:
    def test_ends_overdue_calls_only(self, db_session, settings, enqueued) -> None:
        now = utcnow()
        overdue = started_call(db_session, started_at=now - timedelta(seconds=301))
        running = started_call(db_session, started_at=now - timedelta(seconds=10))
        waiting = accepted_call()

        assert clock.end_overdue_calls(db_session, now, settings) == {"calls_ended_by_sweep": 1}
        db_session.commit()

        assert (reload(db_session, overdue).status, reload(db_session, overdue).ended_by) == (
            RequestStatus.COMPLETED,
            "sweep",
        )
        assert reload(db_session, overdue).ended_at == now
        assert reload(db_session, running).status == RequestStatus.ACCEPTED
        assert reload(db_session, waiting).status == RequestStatus.ACCEPTED
        assert len(earnings(db_session, overdue)) == 1
        assert ("tasks.call_endings.release_room", (str(overdue.id),), {}) in enqueued

    def test_recovers_lost_room_work_at_most_once_per_interval(self, db_session, settings, enqueued, config) -> None:
        now = utcnow()
        no_room = accepted_call(now=now - timedelta(minutes=2), room=None)
        no_room.updated_at = now - timedelta(minutes=2)
        ended = started_call(db_session, started_at=now - timedelta(minutes=7), room="daily")
        call_endings.end_call(db_session, ended.id, ended_by="timer", config=config, now=now - timedelta(minutes=2))
        ended.updated_at = now - timedelta(minutes=2)
        unpaid = accepted_call(now=now - timedelta(minutes=2), room=None, payment_state=PaymentState.HELD)
        unpaid.updated_at = now - timedelta(minutes=2)
        db_session.flush()

        report = call_endings.recover_call_work(db_session, now, settings)
        db_session.commit()

        assert report == {"rooms_requeued": 1, "room_releases_requeued": 1, "refunds_requeued": 0}
        assert ("tasks.calls.provision_room", (str(no_room.id),), {}) in enqueued
        assert ("tasks.call_endings.release_room", (str(ended.id),), {}) in enqueued
        again = call_endings.recover_call_work(db_session, now + timedelta(seconds=5), settings)
        assert again == {"rooms_requeued": 0, "room_releases_requeued": 0, "refunds_requeued": 0}

    def test_recovers_a_lost_refund(self, db_session, settings, enqueued) -> None:
        call = accepted_call()
        call.status, call.cancel_reason = RequestStatus.CANCELLED, CancelReason.SELLER_NO_SHOW
        call.cancelled_at = call.updated_at = utcnow() - timedelta(minutes=1)
        db_session.flush()
        settlement.settle(db_session, call.id, SettlementOutcome.SELLER_NO_SHOW, minimum_seconds=0, now=utcnow())
        enqueued.clear()
        assert call_endings.recover_call_work(db_session, utcnow(), settings)["refunds_requeued"] == 1
        db_session.commit()
        assert ("tasks.call_endings.refund_buyer", (str(call.id),), {}) in enqueued

    def test_a_refund_is_followed_up_for_the_window_only(self, db_session, settings, enqueued) -> None:
        call = accepted_call()
        call.status, call.cancel_reason = RequestStatus.CANCELLED, CancelReason.SELLER_NO_SHOW
        call.cancelled_at = utcnow() - call_endings.REFUND_WINDOW - timedelta(minutes=1)
        db_session.flush()
        settlement.settle(db_session, call.id, SettlementOutcome.SELLER_NO_SHOW, minimum_seconds=0, now=utcnow())
        # Unrefunded a full window after the no-show (every attempt failed): an operator's now.
        assert call_endings.recover_call_work(db_session, utcnow(), settings)["refunds_requeued"] == 0
        call.cancelled_at = utcnow() - call_endings.REFUND_WINDOW + timedelta(minutes=1)
        db_session.flush()
        assert call_endings.recover_call_work(db_session, utcnow(), settings)["refunds_requeued"] == 1


class TestEndCallTask:
    def test_an_eta_task_that_wakes_early_comes_back_at_the_end(self, app, db_session, enqueued) -> None:  # type: ignore[no-untyped-def]
        """The clocks of two machines disagree: the task runs before ``ends_at``, changes nothing,
        and publishes itself again for ``ends_at``."""
        from tasks.call_endings import end_call

        call = started_call(db_session, started_at=utcnow() - timedelta(seconds=10))
        with app.app_context():
            assert end_call.apply(args=(str(call.id),)).get() == "not_due"

        assert reload(db_session, call).status == RequestStatus.ACCEPTED
        assert enqueued == [(end_call.name, (str(call.id), "timer"), {"eta": call.ends_at})]
