"""The admin services: suspension and its effects, and the read models of the admin pages."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from app.db import utcnow
from app.errors import refusal_status
from app.models import CallRequest, CancelReason, EventLog, OutboxEmail, PaymentState, RequestStatus, User
from app.refusals import Refusal
from app.services import admin
from app.services.audit import record_event
from app.services.checkout import start_checkout
from app.services.paywall import load_paywall
from tests.factories import AdminFactory, CallRequestFactory, ProfileFactory, TransactionFactory
from tests.trust_support import finished_call


def pending_for(seller: User, email: str = "buyer@example.org") -> CallRequest:
    return CallRequestFactory(transaction=TransactionFactory(seller=seller, buyer_email=email))


class TestSuspend:
    def test_declines_pending_requests_releases_holds_and_closes_the_paywall(self, db_session, enqueued) -> None:
        profile, staff = ProfileFactory(), AdminFactory()
        seller = profile.user
        waiting = [pending_for(seller, "one@example.org"), pending_for(seller, "two@example.org")]
        accepted = finished_call(seller=seller, status=RequestStatus.ACCEPTED)
        elsewhere = pending_for(ProfileFactory().user)
        now = utcnow()

        declined = admin.suspend_seller(db_session, seller.id, admin_id=staff.id, note="Abuse reports", now=now)
        db_session.commit()

        assert sorted(declined) == sorted(r.id for r in waiting)
        for request in waiting:
            db_session.refresh(request)
            assert (request.status, request.declined_at) == (RequestStatus.DECLINED, now)
        assert db_session.get(CallRequest, accepted.id).status == RequestStatus.ACCEPTED
        assert db_session.get(CallRequest, elsewhere.id).status == RequestStatus.PENDING
        released = sorted(args[0] for name, args, _ in enqueued if name == "tasks.request_payments.release_hold")
        assert released == sorted(str(r.id) for r in waiting)
        db_session.refresh(seller)
        assert seller.suspended_at == now
        assert load_paywall(db_session, profile.slug).unavailable_reason == "suspended"

        mail = {(e.recipient, e.template) for e in db_session.scalars(select(OutboxEmail))}
        assert mail == {
            ("one@example.org", "request_declined_buyer"),
            ("two@example.org", "request_declined_buyer"),
            (seller.email, "seller_suspended"),
        }
        audit = db_session.scalar(select(EventLog).where(EventLog.type == "admin.seller_suspended"))
        assert (audit.ref_id, audit.actor, audit.payload) == (
            str(seller.id),
            f"user:{staff.id}",
            {"note": "Abuse reports"},
        )

    def test_a_suspended_seller_cannot_be_paid(self, db_session, settings, redis) -> None:
        from app.integrations.builtin_payments import builtin_gateway

        profile, staff = ProfileFactory(), AdminFactory()
        admin.suspend_seller(db_session, profile.user_id, admin_id=staff.id, note="", now=utcnow())
        with pytest.raises(Refusal) as refused:
            start_checkout(
                db_session,
                slug=profile.slug,
                buyer_email="buyer@example.org",
                note="",
                submission_key=secrets.token_urlsafe(24),
                gateway=builtin_gateway(settings, redis, notify=lambda event: None),
                app_url="http://127.0.0.1:5000",
                app_env="test",
                capture_manually=True,
                now=utcnow(),
            )
        assert refusal_status(refused.value) == 409

    def test_twice_is_a_conflict_that_changes_nothing(self, db_session) -> None:
        seller, staff = ProfileFactory().user, AdminFactory()
        first = utcnow() - timedelta(hours=1)
        admin.suspend_seller(db_session, seller.id, admin_id=staff.id, note="", now=first)
        with pytest.raises(Refusal) as again:
            admin.suspend_seller(db_session, seller.id, admin_id=staff.id, note="", now=utcnow())
        assert (refusal_status(again.value), again.value.code) == (409, "already_suspended")
        db_session.refresh(seller)
        assert seller.suspended_at == first

    def test_only_sellers_can_be_suspended(self, db_session) -> None:
        staff, other_admin = AdminFactory(), AdminFactory()
        for target in (other_admin.id, uuid.uuid4()):
            with pytest.raises(Refusal) as refused:
                admin.suspend_seller(db_session, target, admin_id=staff.id, note="", now=utcnow())
            assert refusal_status(refused.value) == 404
        db_session.refresh(other_admin)
        assert other_admin.suspended_at is None

    def test_a_long_note_is_refused(self, db_session) -> None:
        seller, staff = ProfileFactory().user, AdminFactory()
        with pytest.raises(Refusal) as refused:
            admin.suspend_seller(db_session, seller.id, admin_id=staff.id, note="x" * 501, now=utcnow())
        assert refusal_status(refused.value) == 422


class TestUnsuspend:
    def test_reopens_the_paywall_and_audits(self, db_session) -> None:
        profile, staff = ProfileFactory(), AdminFactory()
        admin.suspend_seller(db_session, profile.user_id, admin_id=staff.id, note="", now=utcnow())
        admin.unsuspend_seller(db_session, profile.user_id, admin_id=staff.id, now=utcnow())

        assert load_paywall(db_session, profile.slug).unavailable_reason is None
        audit = db_session.scalar(select(EventLog).where(EventLog.type == "admin.seller_unsuspended"))
        assert (audit.ref_id, audit.actor) == (str(profile.user_id), f"user:{staff.id}")
        templates = set(db_session.scalars(select(OutboxEmail.template)))
        assert templates == {"seller_suspended", "seller_unsuspended"}

    def test_a_seller_not_suspended_is_a_conflict(self, db_session) -> None:
        seller, staff = ProfileFactory().user, AdminFactory()
        with pytest.raises(Refusal) as refused:
            admin.unsuspend_seller(db_session, seller.id, admin_id=staff.id, now=utcnow())
        assert (refusal_status(refused.value), refused.value.code) == (409, "not_suspended")


class TestReadModels:
    def test_sellers_search_by_email_slug_or_name(self, db_session) -> None:
        ada = ProfileFactory(display_name="Ada Lovelace", slug="ada-l", user__email="ada@example.com")
        ProfileFactory(display_name="Grace Hopper", slug="grace")
        AdminFactory()

        assert {row.id for row in admin.list_sellers(db_session)} >= {ada.user_id}
        assert all(row.email.startswith(("seller", "ada")) for row in admin.list_sellers(db_session))
        for query in ("ADA@", "ada-l", "lovelace"):
            assert [row.id for row in admin.list_sellers(db_session, query)] == [ada.user_id]
        assert admin.list_sellers(db_session, "%") == []  # a wildcard is a literal character

    def test_disputes_lists_only_disputed_transactions(self, db_session) -> None:
        disputed = TransactionFactory(payment_state=PaymentState.DISPUTED, disputed_at=utcnow())
        request = CallRequestFactory(transaction=disputed, status=RequestStatus.COMPLETED)
        TransactionFactory(payment_state=PaymentState.CAPTURED)

        [row] = admin.list_disputes(db_session)
        assert (row.transaction.id, row.request_id) == (disputed.id, request.id)
        assert row.seller_email == db_session.get(User, disputed.seller_id).email

    def test_events_by_exact_type_dotted_prefix_and_reference(self, db_session) -> None:
        ref = str(uuid.uuid4())
        record_event(db_session, "admin.seller_suspended", ref_id=ref, actor="user:x")
        record_event(db_session, "admin.report_resolved", ref_id="other", actor="user:x")
        record_event(db_session, "administrator.other", ref_id=ref)
        record_event(db_session, "request.accepted", ref_id=ref)
        db_session.flush()

        def types(**filters: str) -> set[str]:
            return {e.type for e in admin.query_events(db_session, **filters)}

        assert types(type="admin") == {"admin.seller_suspended", "admin.report_resolved"}
        assert types(type="admin.seller_suspended") == {"admin.seller_suspended"}
        assert types(ref=ref) == {"admin.seller_suspended", "administrator.other", "request.accepted"}
        assert types(type="admin", ref=ref) == {"admin.seller_suspended"}
        assert types(type="admin_") == set()

    def test_daily_summary_counts_calls_and_buyer_no_shows_per_utc_day(self, db_session) -> None:
        now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
        day1 = datetime(2026, 3, 9, 23, 30, tzinfo=UTC)
        day2 = datetime(2026, 3, 10, 0, 30, tzinfo=UTC)
        finished_call(ended_at=day1, gross_cents=1000, fee_cents=200)
        finished_call(ended_at=day2, gross_cents=2500, fee_cents=500)
        finished_call(ended_at=day2, status=RequestStatus.CANCELLED, cancel_reason=CancelReason.BUYER_NO_SHOW)
        finished_call(ended_at=day2, status=RequestStatus.CANCELLED, cancel_reason=CancelReason.SELLER_NO_SHOW)
        finished_call(ended_at=now - timedelta(days=40))  # outside the window

        rows = admin.daily_summary(db_session, now=now, days=30)
        assert rows == [
            admin.DayTotals(date(2026, 3, 10), 1, 1, 3500, 700, 2800, 0),
            admin.DayTotals(date(2026, 3, 9), 1, 0, 1000, 200, 800, 0),
        ]
        totals = admin.summary_totals(rows)
        assert (totals.calls_completed, totals.gross_cents, totals.net_cents) == (2, 4500, 3600)
        assert admin.summary_totals([]) is None

    def test_daily_summary_counts_what_an_early_ended_call_kept(self, db_session) -> None:
        from app.models import CallSettlement, SettlementOutcome

        now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
        call = finished_call(ended_at=now - timedelta(hours=1), gross_cents=1000, fee_cents=200)
        call.transaction.refunded_cents = 750  # the seller ended it early: 750 back to the buyer
        db_session.add(
            CallSettlement(
                call_request_id=call.id,
                outcome=SettlementOutcome.SELLER_ENDED_EARLY,
                connected_seconds=75,
                gross_cents=1000,
                refund_cents=750,
                fee_cents=50,
                net_cents=200,
                currency="usd",
            )
        )
        db_session.flush()

        [row] = admin.daily_summary(db_session, now=now, days=1)
        assert (row.gross_cents, row.fee_cents, row.net_cents, row.refunded_cents) == (1000, 50, 200, 750)
        assert row.fee_cents + row.net_cents + row.refunded_cents == row.gross_cents

    def test_counts_for_the_index(self, db_session) -> None:
        TransactionFactory(payment_state=PaymentState.DISPUTED)
        seller, staff = ProfileFactory().user, AdminFactory()
        admin.suspend_seller(db_session, seller.id, admin_id=staff.id, note="", now=utcnow())
        counts = admin.admin_counts(db_session)
        assert (counts["disputes"], counts["suspended"], counts["open_reports"]) == (1, 1, 0)
