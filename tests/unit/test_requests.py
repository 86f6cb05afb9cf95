"""The seller's decision: list, accept, decline, expiry; every transition and its races."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import select, text

from app.db import db, utcnow
from app.formats import format_money
from app.models import CallRequest, CancelReason, EventLog, OutboxEmail, PaymentState, RequestStatus
from app.refusals import Conflict, NotFound
from app.services.lifecycle.clock import mark_payment_failed
from app.services.lifecycle.decisions import accept_request, decline_request, expire_pending_requests
from app.services.requests import list_requests, parse_status, serialize_request
from tests.factories import CallRequestFactory, ProfileFactory, UserFactory

WINDOW = 900
CAPTURE = "tasks.request_payments.capture_accepted"
RELEASE = "tasks.request_payments.release_hold"
SEND = "tasks.email_delivery.send_email"


def pending_request(seller=None, **overrides) -> CallRequest:  # type: ignore[no-untyped-def]
    seller = seller or ProfileFactory().user
    return CallRequestFactory(transaction__seller=seller, **overrides)


def current(session, call_request: CallRequest) -> CallRequest:  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.get(CallRequest, call_request.id)


def events(session, ref_id: uuid.UUID) -> list[tuple[str, str | None]]:  # type: ignore[no-untyped-def]
    rows = session.scalars(select(EventLog).where(EventLog.ref_id == str(ref_id)).order_by(EventLog.created_at))
    return [(row.type, row.actor) for row in rows]


def emails(session, template: str | None = None) -> list[OutboxEmail]:  # type: ignore[no-untyped-def]
    query = select(OutboxEmail).order_by(OutboxEmail.created_at)
    if template:
        query = query.where(OutboxEmail.template == template)
    return list(session.scalars(query))


class TestParseStatus:
    @pytest.mark.parametrize("raw", ["pending", "PENDING", " Pending "])
    def test_any_case(self, raw: str) -> None:
        assert parse_status(raw) is RequestStatus.PENDING

    @pytest.mark.parametrize("raw", [None, "", "all", "ALL"])
    def test_all(self, raw: str | None) -> None:
        assert parse_status(raw) is None

    def test_unknown_is_refused(self) -> None:
        with pytest.raises(ValueError):
            parse_status("paid")


class TestListRequests:
    def test_own_requests_newest_first(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory()
        with freeze_time("2026-11-25 10:00:00"):
            older = pending_request(seller)
        with freeze_time("2026-11-25 11:00:00"):
            newer = pending_request(seller)
        pending_request()  # another seller's

        assert [r.id for r in list_requests(db_session, seller.id)] == [newer.id, older.id]

    def test_status_filter(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory()
        waiting = pending_request(seller)
        pending_request(seller, status=RequestStatus.DECLINED, declined_at=utcnow())

        assert [r.id for r in list_requests(db_session, seller.id, RequestStatus.PENDING)] == [waiting.id]
        assert len(list_requests(db_session, seller.id, RequestStatus.DECLINED)) == 1
        assert list_requests(db_session, seller.id, RequestStatus.COMPLETED) == []


class TestAcceptRequest:
    def test_pending_becomes_accepted(self, db_session, enqueued) -> None:  # type: ignore[no-untyped-def]
        call_request = pending_request()
        with freeze_time("2026-11-25 12:00:00"):
            now = utcnow()
            accepted = accept_request(
                db_session, call_request.id, seller_id=call_request.seller_id, now=now, join_window_seconds=WINDOW
            )

        assert accepted.status is RequestStatus.ACCEPTED
        assert accepted.accepted_at == now
        assert accepted.join_deadline == now + timedelta(seconds=WINDOW)
        assert len(accepted.join_key) >= 43
        assert events(db_session, call_request.id) == [("request.accepted", f"user:{call_request.seller_id}")]

    def test_capture_is_published_only_after_commit(self, db_session, enqueued) -> None:  # type: ignore[no-untyped-def]
        call_request = pending_request()
        accept_request(
            db_session, call_request.id, seller_id=call_request.seller_id, now=utcnow(), join_window_seconds=WINDOW
        )
        assert CAPTURE not in enqueued.names()

        db_session.commit()

        assert (CAPTURE, (str(call_request.id),), {}) in enqueued

    def test_rollback_publishes_nothing(self, db_session, enqueued) -> None:  # type: ignore[no-untyped-def]
        call_request = pending_request()
        db_session.commit()
        accept_request(
            db_session, call_request.id, seller_id=call_request.seller_id, now=utcnow(), join_window_seconds=WINDOW
        )
        db_session.rollback()
        db_session.commit()

        assert CAPTURE not in enqueued.names()
        assert current(db_session, call_request).status is RequestStatus.PENDING

    def test_join_keys_are_random(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory()
        keys = {
            accept_request(
                db_session, pending_request(seller).id, seller_id=seller.id, now=utcnow(), join_window_seconds=WINDOW
            ).join_key
            for _ in range(3)
        }
        assert len(keys) == 3

    def test_second_accept_is_rejected_and_changes_nothing(self, db_session, enqueued) -> None:  # type: ignore[no-untyped-def]
        call_request = pending_request()
        first = accept_request(
            db_session, call_request.id, seller_id=call_request.seller_id, now=utcnow(), join_window_seconds=WINDOW
        )
        accepted_at, join_key = first.accepted_at, first.join_key

        with pytest.raises(Conflict) as refusal:
            accept_request(
                db_session,
                call_request.id,
                seller_id=call_request.seller_id,
                now=utcnow() + timedelta(seconds=5),
                join_window_seconds=WINDOW,
            )

        assert refusal.value.code == "already_accepted"
        after = current(db_session, call_request)
        assert (after.accepted_at, after.join_key) == (accepted_at, join_key)
        db_session.commit()
        assert enqueued.names().count(CAPTURE) == 1

    def test_another_sellers_request_is_not_found(self, db_session) -> None:  # type: ignore[no-untyped-def]
        call_request = pending_request()
        intruder = UserFactory()

        with pytest.raises(NotFound):
            accept_request(db_session, call_request.id, seller_id=intruder.id, now=utcnow(), join_window_seconds=WINDOW)

        assert current(db_session, call_request).status is RequestStatus.PENDING
        assert events(db_session, call_request.id) == []

    def test_unknown_id_is_not_found(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory()
        with pytest.raises(NotFound):
            accept_request(db_session, uuid.uuid4(), seller_id=seller.id, now=utcnow(), join_window_seconds=WINDOW)

    def test_expired_request_cannot_be_accepted_before_the_sweep(self, db_session) -> None:  # type: ignore[no-untyped-def]
        with freeze_time("2026-11-25 12:00:00"):
            call_request = pending_request()  # expires a day later
        with freeze_time("2026-11-26 12:00:00"), pytest.raises(Conflict) as refusal:
            accept_request(
                db_session, call_request.id, seller_id=call_request.seller_id, now=utcnow(), join_window_seconds=WINDOW
            )

        assert refusal.value.code == "expired"
        assert current(db_session, call_request).status is RequestStatus.PENDING

    @pytest.mark.parametrize(
        ("status", "code"),
        [
            (RequestStatus.DECLINED, "already_declined"),
            (RequestStatus.COMPLETED, "completed"),
        ],
    )
    def test_only_pending_can_be_accepted(self, db_session, status, code) -> None:  # type: ignore[no-untyped-def]
        call_request = pending_request(status=status)
        with pytest.raises(Conflict) as refusal:
            accept_request(
                db_session, call_request.id, seller_id=call_request.seller_id, now=utcnow(), join_window_seconds=WINDOW
            )
        assert refusal.value.code == code
        assert current(db_session, call_request).status is status


class TestDeclineRequest:
    def test_pending_becomes_declined_and_the_buyer_is_told(self, db_session, enqueued) -> None:  # type: ignore[no-untyped-def]
        profile = ProfileFactory(display_name="Ada")
        call_request = pending_request(profile.user)
        now = utcnow()

        declined = decline_request(db_session, call_request.id, seller_id=profile.user_id, now=now)
        db_session.commit()

        assert declined.status is RequestStatus.DECLINED
        assert declined.declined_at == now
        assert declined.accepted_at is None and declined.join_key is None
        [email] = emails(db_session, "request_declined_buyer")
        assert email.recipient == call_request.buyer_email
        assert email.dedupe_key == f"request_declined:buyer:{call_request.id}"
        assert email.context["seller_name"] == "Ada"
        assert email.context["amount"] == "$10.00"
        assert email.context["refund"] is False
        assert (RELEASE, (str(call_request.id),), {}) in enqueued
        assert (SEND, (str(email.id),), {}) in enqueued
        assert events(db_session, call_request.id) == [("request.declined", f"user:{profile.user_id}")]

    def test_immediate_capture_promises_a_refund(self, db_session) -> None:  # type: ignore[no-untyped-def]
        call_request = pending_request(transaction__payment_state=PaymentState.CAPTURED)
        decline_request(db_session, call_request.id, seller_id=call_request.seller_id, now=utcnow())

        [email] = emails(db_session, "request_declined_buyer")
        assert email.context["refund"] is True

    def test_decline_after_accept_is_rejected(self, db_session, enqueued) -> None:  # type: ignore[no-untyped-def]
        call_request = pending_request()
        accept_request(
            db_session, call_request.id, seller_id=call_request.seller_id, now=utcnow(), join_window_seconds=WINDOW
        )

        with pytest.raises(Conflict) as refusal:
            decline_request(db_session, call_request.id, seller_id=call_request.seller_id, now=utcnow())

        assert refusal.value.code == "already_accepted"
        assert current(db_session, call_request).status is RequestStatus.ACCEPTED
        assert emails(db_session) == []
        db_session.commit()
        assert RELEASE not in enqueued.names()

    def test_another_sellers_request_is_not_found(self, db_session) -> None:  # type: ignore[no-untyped-def]
        call_request = pending_request()
        with pytest.raises(NotFound):
            decline_request(db_session, call_request.id, seller_id=UserFactory().id, now=utcnow())
        assert current(db_session, call_request).status is RequestStatus.PENDING
        assert emails(db_session) == []


class TestExpirePendingRequests:
    def test_overdue_pending_requests_are_cancelled(self, db_session, settings, enqueued) -> None:  # type: ignore[no-untyped-def]
        seller = ProfileFactory(display_name="Grace").user
        with freeze_time("2026-11-25 12:00:00"):
            overdue = pending_request(seller)
        with freeze_time("2026-11-25 18:00:00"):
            fresh = pending_request(seller)
            accepted = pending_request(seller, status=RequestStatus.ACCEPTED, accepted_at=utcnow())

        with freeze_time("2026-11-26 12:00:01"):
            report = expire_pending_requests(db_session, utcnow(), settings)
            db_session.commit()
            now = utcnow()

        assert report == {"requests_expired": 1}
        expired = current(db_session, overdue)
        assert (expired.status, expired.cancel_reason, expired.cancelled_at) == (
            RequestStatus.CANCELLED,
            CancelReason.EXPIRED,
            now,
        )
        assert current(db_session, fresh).status is RequestStatus.PENDING
        assert current(db_session, accepted).status is RequestStatus.ACCEPTED
        assert {(e.template, e.recipient) for e in emails(db_session)} == {
            ("request_expired_buyer", overdue.buyer_email),
            ("request_expired_seller", seller.email),
        }
        assert enqueued.names().count(RELEASE) == 1
        assert (RELEASE, (str(overdue.id),), {}) in enqueued
        assert events(db_session, overdue.id) == [("request.expired", "system")]

    def test_exactly_at_expiry_it_expires(self, db_session, settings) -> None:  # type: ignore[no-untyped-def]
        with freeze_time("2026-11-25 12:00:00"):
            call_request = pending_request()
        with freeze_time("2026-11-26 12:00:00"):
            assert expire_pending_requests(db_session, utcnow(), settings) == {"requests_expired": 1}
        assert current(db_session, call_request).status is RequestStatus.CANCELLED

    def test_a_second_sweep_does_nothing(self, db_session, settings, enqueued) -> None:  # type: ignore[no-untyped-def]
        with freeze_time("2026-11-25 12:00:00"):
            pending_request()
        with freeze_time("2026-11-27 00:00:00"):
            expire_pending_requests(db_session, utcnow(), settings)
            db_session.commit()
            assert expire_pending_requests(db_session, utcnow(), settings) == {"requests_expired": 0}
            db_session.commit()

        assert len(emails(db_session)) == 2
        assert enqueued.names().count(RELEASE) == 1

    def test_accept_after_the_sweep_is_rejected(self, db_session, settings) -> None:  # type: ignore[no-untyped-def]
        with freeze_time("2026-11-25 12:00:00"):
            call_request = pending_request()
        with freeze_time("2026-11-26 12:00:05"):
            expire_pending_requests(db_session, utcnow(), settings)
            with pytest.raises(Conflict) as refusal:
                accept_request(
                    db_session,
                    call_request.id,
                    seller_id=call_request.seller_id,
                    now=utcnow(),
                    join_window_seconds=WINDOW,
                )
        assert refusal.value.code == "cancelled"


class TestMarkPaymentFailed:
    def test_accepted_becomes_cancelled_and_both_are_told(self, db_session, enqueued) -> None:  # type: ignore[no-untyped-def]
        call_request = pending_request()
        accept_request(
            db_session, call_request.id, seller_id=call_request.seller_id, now=utcnow(), join_window_seconds=WINDOW
        )
        now = utcnow()

        assert mark_payment_failed(db_session, call_request.id, now=now, code="card_declined") is True
        db_session.commit()

        after = current(db_session, call_request)
        assert (after.status, after.cancel_reason, after.cancelled_at) == (
            RequestStatus.CANCELLED,
            CancelReason.PAYMENT_FAILED,
            now,
        )
        assert {e.template for e in emails(db_session)} == {"payment_failed_buyer", "payment_failed_seller"}
        assert (RELEASE, (str(call_request.id),), {}) in enqueued
        assert ("request.payment_failed", "system") in events(db_session, call_request.id)

    def test_repeat_is_a_no_op(self, db_session) -> None:  # type: ignore[no-untyped-def]
        call_request = pending_request(status=RequestStatus.ACCEPTED, accepted_at=utcnow())
        assert mark_payment_failed(db_session, call_request.id, now=utcnow()) is True
        assert mark_payment_failed(db_session, call_request.id, now=utcnow()) is False
        assert len(emails(db_session)) == 2

    def test_pending_request_is_not_touched(self, db_session) -> None:  # type: ignore[no-untyped-def]
        call_request = pending_request()
        assert mark_payment_failed(db_session, call_request.id, now=utcnow()) is False
        assert current(db_session, call_request).status is RequestStatus.PENDING


class TestSerializeRequest:
    def test_shape(self, db_session) -> None:  # type: ignore[no-untyped-def]
        with freeze_time("2026-11-25 12:00:00"):
            call_request = pending_request(note="Hi <b>there</b>")
            data = serialize_request(current(db_session, call_request))

        assert data == {
            "id": str(call_request.id),
            "status": "PENDING",
            "buyerEmail": call_request.buyer_email,
            "note": "Hi <b>there</b>",
            "grossCents": 1000,
            "netCents": 800,
            "currency": "usd",
            "createdAt": "2026-11-25T12:00:00Z",
            "expiresAt": "2026-11-26T12:00:00Z",
            "acceptedAt": None,
            "startedAt": None,
            "endsAt": None,
            "endedAt": None,
            "cancelReason": None,
            "joinUrl": None,
            "proposedStarts": [],
            "scheduledStart": None,
            "joinOpensAt": None,
            "buyerTimeZone": None,
            "reschedule": None,
        }

    def test_cancel_reason(self, db_session) -> None:  # type: ignore[no-untyped-def]
        call_request = pending_request(
            status=RequestStatus.CANCELLED, cancel_reason=CancelReason.EXPIRED, cancelled_at=utcnow()
        )
        assert serialize_request(call_request)["cancelReason"] == "expired"


@pytest.mark.parametrize(
    ("cents", "currency", "text"),
    [(1000, "usd", "$10.00"), (1050, "eur", "€10.50"), (123456, "gbp", "£1,234.56"), (5, "sek", "0.05 SEK")],
)
def test_format_money(cents: int, currency: str, text: str) -> None:
    assert format_money(cents, currency) == text


# --- Races between real transactions ------------------------------------------------------------


def committed_request(session, **overrides) -> CallRequest:  # type: ignore[no-untyped-def]
    call_request = pending_request(**overrides)
    session.commit()
    return call_request


def run_in_threads(count: int, work) -> list[object]:  # type: ignore[no-untyped-def]
    """Run ``work(index, session)`` in ``count`` threads at once, each in its own session and transaction;
    returns each thread's result or the exception it raised."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def runner(index: int) -> None:
        session = db.new_session()
        try:
            barrier.wait(timeout=10)
            results[index] = work(index, session)
            session.commit()
        except Exception as error:
            session.rollback()
            results[index] = error
        finally:
            session.close()

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


class TestRaces:
    def test_concurrent_accepts_exactly_one_wins(self, committed_db, enqueued) -> None:  # type: ignore[no-untyped-def]
        call_request = committed_request(committed_db)

        def accept(index, session):  # type: ignore[no-untyped-def]
            return accept_request(
                session, call_request.id, seller_id=call_request.seller_id, now=utcnow(), join_window_seconds=WINDOW
            ).join_key

        results = run_in_threads(8, accept)

        winners = [r for r in results if isinstance(r, str)]
        losers = [r for r in results if isinstance(r, Conflict)]
        assert len(winners) == 1 and len(losers) == 7, results
        assert {r.code for r in losers} == {"already_accepted"}
        assert current(committed_db, call_request).join_key == winners[0]
        assert enqueued.names().count(CAPTURE) == 1
        assert events(committed_db, call_request.id) == [("request.accepted", f"user:{call_request.seller_id}")]

    def test_accept_racing_decline_exactly_one_wins(self, committed_db) -> None:  # type: ignore[no-untyped-def]
        call_request = committed_request(committed_db)
        seller_id = call_request.seller_id

        def decide(index, session):  # type: ignore[no-untyped-def]
            if index % 2:
                return accept_request(
                    session, call_request.id, seller_id=seller_id, now=utcnow(), join_window_seconds=1
                )
            return decline_request(session, call_request.id, seller_id=seller_id, now=utcnow())

        results = run_in_threads(6, decide)

        assert sum(isinstance(r, CallRequest) for r in results) == 1, results
        assert sum(isinstance(r, Conflict) for r in results) == 5
        final = current(committed_db, call_request)
        assert final.status in (RequestStatus.ACCEPTED, RequestStatus.DECLINED)
        assert len(emails(committed_db)) == (1 if final.status is RequestStatus.DECLINED else 0)

    def test_accept_racing_the_expiry_sweep_exactly_one_wins(self, committed_db, settings) -> None:  # type: ignore[no-untyped-def]
        # The accepts arrive one second before expiry, the sweep one second after: both are
        # entitled to each request, so only the conditional UPDATEs decide who gets it.
        requests = [committed_request(committed_db) for _ in range(5)]
        expires_at = utcnow() + timedelta(hours=1)
        for call_request in requests:
            call_request.expires_at = expires_at
        committed_db.commit()

        def accept_all(session):  # type: ignore[no-untyped-def]
            outcomes = []
            for call_request in requests:
                try:
                    accept_request(
                        session,
                        call_request.id,
                        seller_id=call_request.seller_id,
                        now=expires_at - timedelta(seconds=1),
                        join_window_seconds=WINDOW,
                    )
                    session.commit()
                    outcomes.append("accepted")
                except Conflict as conflict:
                    session.rollback()
                    outcomes.append(conflict.code)
            return outcomes

        def sweep(session):  # type: ignore[no-untyped-def]
            return expire_pending_requests(session, expires_at + timedelta(seconds=1), settings)["requests_expired"]

        accepts, swept = run_in_threads(2, lambda index, session: (accept_all, sweep)[index](session))

        leftover = expire_pending_requests(committed_db, expires_at + timedelta(seconds=2), settings)
        committed_db.commit()
        statuses = [current(committed_db, r).status for r in requests]
        # Every request ended exactly one way: accepted by the seller or cancelled by a sweep.
        assert set(accepts) <= {"accepted", "cancelled"}, accepts
        assert statuses.count(RequestStatus.ACCEPTED) == accepts.count("accepted")
        assert statuses.count(RequestStatus.CANCELLED) == 5 - accepts.count("accepted")
        assert swept + leftover["requests_expired"] == 5 - accepts.count("accepted")

    def test_sweep_holding_the_row_makes_the_accept_lose(self, committed_db, settings) -> None:  # type: ignore[no-untyped-def]
        call_request = committed_request(committed_db)
        expires_at = current(committed_db, call_request).expires_at
        committed_db.commit()
        sweep = db.new_session()
        assert expire_pending_requests(sweep, expires_at, settings) == {"requests_expired": 1}  # not committed yet

        outcome: list[object] = []

        def accept() -> None:
            session = db.new_session()
            try:
                accept_request(
                    session,
                    call_request.id,
                    seller_id=call_request.seller_id,
                    now=expires_at - timedelta(seconds=1),
                    join_window_seconds=WINDOW,
                )
                session.commit()
                outcome.append("accepted")
            except Conflict as conflict:
                outcome.append(conflict.code)
            finally:
                session.close()

        thread = threading.Thread(target=accept)
        thread.start()
        thread.join(timeout=0.5)
        assert thread.is_alive(), "the accept should wait for the sweep's row lock"
        sweep.commit()
        sweep.close()
        thread.join(timeout=10)

        assert outcome == ["cancelled"]
        assert current(committed_db, call_request).status is RequestStatus.CANCELLED

    def test_accept_holding_the_row_makes_the_sweep_skip_it(self, committed_db, settings) -> None:  # type: ignore[no-untyped-def]
        call_request = committed_request(committed_db)
        expires_at = current(committed_db, call_request).expires_at
        committed_db.commit()
        seller_session, sweep = db.new_session(), db.new_session()
        try:
            accept_request(
                seller_session,
                call_request.id,
                seller_id=call_request.seller_id,
                now=expires_at - timedelta(seconds=1),
                join_window_seconds=WINDOW,
            )
            # Were the sweep to wait for the row, this test would fail after 2 s instead of hanging.
            sweep.execute(text("SET LOCAL lock_timeout = '2s'"))
            # SKIP LOCKED: the sweep does not wait for the seller's transaction, and does not take the row.
            assert expire_pending_requests(sweep, expires_at, settings) == {"requests_expired": 0}
            sweep.commit()
            seller_session.commit()
        finally:
            sweep.close()
            seller_session.close()

        assert current(committed_db, call_request).status is RequestStatus.ACCEPTED
        assert expire_pending_requests(committed_db, expires_at, settings) == {"requests_expired": 0}
