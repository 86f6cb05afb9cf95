"""Payouts: limits, the overdraw race, the admin's decisions, their ledger rows, emails and audit."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from app.db import db, utcnow
from app.errors import refusal_status
from app.models import EventLog, LedgerEntry, LedgerKind, OutboxEmail, PayoutRequest, PayoutStatus, User
from app.refusals import Refusal as PayoutError
from app.services import ledger, payouts
from app.services.email_delivery import jinja_renderer
from tests.factories import AdminFactory, CallRequestFactory, UserFactory


def fund(session, seller: User, *amounts: int) -> None:  # type: ignore[no-untyped-def]
    """Give ``seller`` one completed call per amount, each earning that much."""
    for amount in amounts:
        completed = CallRequestFactory(
            transaction__seller=seller,
            transaction__gross_cents=amount + 100,
            transaction__platform_fee_cents=100,
            transaction__net_cents=amount,
            status="COMPLETED",
        )
        ledger.record_earning(session, completed, now=utcnow())


def request(session, seller: User, amount: int) -> PayoutRequest:  # type: ignore[no-untyped-def]
    return payouts.request_payout(session, seller.id, amount, currency="usd", now=utcnow())


def ledger_rows(session, seller: User) -> list[tuple[LedgerKind, int]]:  # type: ignore[no-untyped-def]
    rows = session.scalars(
        select(LedgerEntry).where(LedgerEntry.seller_id == seller.id).order_by(LedgerEntry.created_at, LedgerEntry.id)
    )
    return [(row.kind, row.amount_cents) for row in rows]


def outbox(session, template: str) -> list[OutboxEmail]:  # type: ignore[no-untyped-def]
    return list(session.scalars(select(OutboxEmail).where(OutboxEmail.template == template)))


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


class TestRequestPayout:
    def test_takes_the_amount_out_of_the_balance(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory()
        fund(db_session, seller, 3000)

        payout = request(db_session, seller, 2500)

        assert (payout.status, payout.amount_cents, payout.currency) == (PayoutStatus.REQUESTED, 2500, "usd")
        assert ledger_rows(db_session, seller)[-1] == (LedgerKind.PAYOUT, -2500)
        assert ledger.available_cents(db_session, seller.id, "usd") == 500
        row = db_session.scalar(select(LedgerEntry).where(LedgerEntry.payout_request_id == payout.id))
        assert row.memo == "Payout requested"

    def test_the_whole_balance_can_be_requested(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory()
        fund(db_session, seller, 800, 800)
        request(db_session, seller, 1600)
        assert ledger.available_cents(db_session, seller.id, "usd") == 0

    @pytest.mark.parametrize("amount", [999, 0, -1000])
    def test_below_the_minimum_is_refused(self, db_session, amount: int) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory()
        fund(db_session, seller, 5000)
        with pytest.raises(PayoutError) as caught:
            request(db_session, seller, amount)
        assert (refusal_status(caught.value), caught.value.code, list(caught.value.fields)) == (
            422,
            "amount_too_small",
            ["amountCents"],
        )
        assert "$10" in caught.value.message
        assert db_session.scalar(select(PayoutRequest)) is None

    @pytest.mark.parametrize("amount", [10.5, "1000", True, None])
    def test_not_whole_cents_is_refused(self, db_session, amount: object) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory()
        fund(db_session, seller, 5000)
        with pytest.raises(PayoutError) as caught:
            request(db_session, seller, amount)  # type: ignore[arg-type]
        assert caught.value.code == "invalid"

    def test_more_than_available_is_refused(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory()
        fund(db_session, seller, 1500)
        with pytest.raises(PayoutError) as caught:
            request(db_session, seller, 1501)
        assert (refusal_status(caught.value), caught.value.code) == (422, "insufficient_balance")
        assert "$15" in caught.value.message
        assert ledger_rows(db_session, seller) == [(LedgerKind.EARNING, 1500)]

    def test_money_already_requested_cannot_be_requested_again(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory()
        fund(db_session, seller, 2000)
        request(db_session, seller, 1500)
        with pytest.raises(PayoutError, match="at most"):
            request(db_session, seller, 1000)

    def test_a_suspended_seller_cannot_request(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory(suspended_at=utcnow())
        fund(db_session, seller, 2000)
        with pytest.raises(PayoutError) as caught:
            request(db_session, seller, 1000)
        assert (refusal_status(caught.value), caught.value.code) == (403, "suspended")

    def test_unknown_seller(self, db_session) -> None:  # type: ignore[no-untyped-def]
        with pytest.raises(PayoutError) as caught:
            payouts.request_payout(db_session, uuid.uuid4(), 1000, currency="usd", now=utcnow())
        assert refusal_status(caught.value) == 404

    def test_is_audited_and_admins_are_told(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory()
        admins = [AdminFactory(), AdminFactory()]
        fund(db_session, seller, 2000)

        payout = request(db_session, seller, 2000)

        event = db_session.scalar(select(EventLog).where(EventLog.ref_id == str(payout.id)))
        assert (event.type, event.actor, event.payload) == (
            "payout.requested",
            f"user:{seller.id}",
            {"amountCents": 2000, "currency": "usd"},
        )
        told = outbox(db_session, "payout_requested_admin")
        assert sorted(e.recipient for e in told) == sorted(a.email for a in admins)
        assert told[0].context["amount"] == "$20.00"
        # The admin's email names the seller.
        assert told[0].context["seller_email"] == seller.email and told[0].context["seller_name"]

    def test_the_counter_moves_only_when_the_transaction_commits(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory()
        fund(db_session, seller, 3000)
        before = metric("chatlink_payouts_requested_total")

        request(db_session, seller, 1000)
        assert metric("chatlink_payouts_requested_total") == before
        db_session.commit()
        assert metric("chatlink_payouts_requested_total") == before + 1

        request(db_session, seller, 1000)
        db_session.rollback()
        assert metric("chatlink_payouts_requested_total") == before + 1


class TestOverdrawRace:
    def test_two_requests_for_the_whole_balance_one_wins(self, committed_db) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory()
        fund(committed_db, seller, 3000)
        committed_db.commit()
        seller_id = seller.id
        start = threading.Barrier(2)
        outcomes: list[str] = []

        def ask() -> None:
            session = db.new_session()
            try:
                start.wait()
                payouts.request_payout(session, seller_id, 3000, currency="usd", now=utcnow())
                # Hold the lock a moment, so the other request certainly arrives while it is held.
                time.sleep(0.3)
                session.commit()
                outcomes.append("paid")
            except PayoutError as error:
                session.rollback()
                outcomes.append(error.code)
            finally:
                session.close()

        threads = [threading.Thread(target=ask) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        assert sorted(outcomes) == ["insufficient_balance", "paid"]
        with db.session_scope() as check:
            assert ledger.available_cents(check, seller_id, "usd") == 0
            assert len(check.scalars(select(PayoutRequest).where(PayoutRequest.seller_id == seller_id)).all()) == 1


class TestProcessPayout:
    def test_marks_it_processed_emails_and_audits(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller, admin = UserFactory(), AdminFactory()
        fund(db_session, seller, 2500)
        payout = request(db_session, seller, 2500)
        now = utcnow()

        done = payouts.process_payout(db_session, payout.id, admin_id=admin.id, reference="  TRX-42  ", now=now)

        assert (done.status, done.reference, done.processed_by_id, done.processed_at) == (
            PayoutStatus.PROCESSED,
            "TRX-42",
            admin.id,
            now,
        )
        assert ledger.available_cents(db_session, seller.id, "usd") == 0  # paid money stays out
        [email] = outbox(db_session, "payout_processed")
        assert email.recipient == seller.email
        assert email.dedupe_key == f"payout_processed:{payout.id}"
        assert email.context["reference"] == "TRX-42" and email.context["amountCents"] == 2500
        event = db_session.scalar(select(EventLog).where(EventLog.type == "admin.payout_processed"))
        assert (event.ref_id, event.actor) == (str(payout.id), f"user:{admin.id}")
        assert event.payload["reference"] == "TRX-42"

    def test_a_decided_payout_cannot_be_decided_again(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller, admin = UserFactory(), AdminFactory()
        fund(db_session, seller, 2500)
        payout = request(db_session, seller, 2500)
        payouts.process_payout(db_session, payout.id, admin_id=admin.id, reference="A", now=utcnow())

        for decide in (
            lambda: payouts.process_payout(db_session, payout.id, admin_id=admin.id, reference="B", now=utcnow()),
            lambda: payouts.reject_payout(db_session, payout.id, admin_id=admin.id, reason="no", now=utcnow()),
        ):
            with pytest.raises(PayoutError) as caught:
                decide()
            assert (refusal_status(caught.value), caught.value.code) == (409, "already_decided")

        db_session.expire_all()
        assert db_session.get(PayoutRequest, payout.id).reference == "A"
        assert ledger_rows(db_session, seller) == [(LedgerKind.EARNING, 2500), (LedgerKind.PAYOUT, -2500)]
        assert len(outbox(db_session, "payout_processed")) == 1

    def test_unknown_payout(self, db_session) -> None:  # type: ignore[no-untyped-def]
        with pytest.raises(PayoutError) as caught:
            payouts.process_payout(db_session, uuid.uuid4(), admin_id=AdminFactory().id, reference="x", now=utcnow())
        assert refusal_status(caught.value) == 404

    @pytest.mark.parametrize("reference", ["", "   ", "x" * 201])
    def test_reference_is_required_and_bounded(self, db_session, reference: str) -> None:  # type: ignore[no-untyped-def]
        seller = UserFactory()
        fund(db_session, seller, 2500)
        payout = request(db_session, seller, 2500)
        with pytest.raises(PayoutError) as caught:
            payouts.process_payout(db_session, payout.id, admin_id=AdminFactory().id, reference=reference, now=utcnow())
        assert (refusal_status(caught.value), list(caught.value.fields)) == (422, ["reference"])
        assert db_session.get(PayoutRequest, payout.id).status == PayoutStatus.REQUESTED


class TestRejectPayout:
    def test_returns_the_amount_and_tells_the_seller_why(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller, admin = UserFactory(), AdminFactory()
        fund(db_session, seller, 4000)
        payout = request(db_session, seller, 3000)
        assert ledger.available_cents(db_session, seller.id, "usd") == 1000

        done = payouts.reject_payout(
            db_session, payout.id, admin_id=admin.id, reason="Bank details missing", now=utcnow()
        )

        assert (done.status, done.reject_reason, done.processed_by_id) == (
            PayoutStatus.REJECTED,
            "Bank details missing",
            admin.id,
        )
        assert ledger_rows(db_session, seller) == [
            (LedgerKind.EARNING, 4000),
            (LedgerKind.PAYOUT, -3000),
            (LedgerKind.REVERSAL, 3000),
        ]
        assert ledger.available_cents(db_session, seller.id, "usd") == 4000
        [email] = outbox(db_session, "payout_rejected")
        assert (email.recipient, email.context["reason"]) == (seller.email, "Bank details missing")
        event = db_session.scalar(select(EventLog).where(EventLog.type == "admin.payout_rejected"))
        assert (event.ref_id, event.actor, event.payload["reason"]) == (
            str(payout.id),
            f"user:{admin.id}",
            "Bank details missing",
        )

    def test_decisions_count_after_commit(self, db_session) -> None:  # type: ignore[no-untyped-def]
        seller, admin = UserFactory(), AdminFactory()
        fund(db_session, seller, 4000)
        first, second = request(db_session, seller, 2000), request(db_session, seller, 2000)
        processed, rejected = metric("chatlink_payouts_processed_total"), metric("chatlink_payouts_rejected_total")

        payouts.process_payout(db_session, first.id, admin_id=admin.id, reference="R1", now=utcnow())
        payouts.reject_payout(db_session, second.id, admin_id=admin.id, reason="No", now=utcnow())
        db_session.commit()

        assert metric("chatlink_payouts_processed_total") == processed + 1
        assert metric("chatlink_payouts_rejected_total") == rejected + 1


class TestConcurrentDecisions:
    def test_process_and_reject_racing_one_wins(self, committed_db) -> None:  # type: ignore[no-untyped-def]
        seller, admin = UserFactory(), AdminFactory()
        fund(committed_db, seller, 2000)
        payout = request(committed_db, seller, 2000)
        committed_db.commit()
        start = threading.Barrier(2)
        outcomes: list[str] = []

        def decide(action: str) -> None:
            session = db.new_session()
            try:
                start.wait()
                if action == "process":
                    payouts.process_payout(session, payout.id, admin_id=admin.id, reference="R", now=utcnow())
                else:
                    payouts.reject_payout(session, payout.id, admin_id=admin.id, reason="No", now=utcnow())
                time.sleep(0.2)
                session.commit()
                outcomes.append(action)
            except PayoutError as error:
                session.rollback()
                outcomes.append(error.code)
            finally:
                session.close()

        threads = [threading.Thread(target=decide, args=(a,)) for a in ("process", "reject")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        assert len(outcomes) == 2 and outcomes.count("already_decided") == 1
        with db.session_scope() as check:
            final = check.get(PayoutRequest, payout.id)
            expected_balance = 2000 if final.status == PayoutStatus.REJECTED else 0
            [winner] = [outcome for outcome in outcomes if outcome != "already_decided"]
            assert final.status == {"process": PayoutStatus.PROCESSED, "reject": PayoutStatus.REJECTED}[winner]
            assert ledger.available_cents(check, seller.id, "usd") == expected_balance


class TestEmails:
    @pytest.mark.parametrize(
        ("template", "extra", "expected"),
        [
            ("payout_processed", {"reference": "TRX-9"}, ("Your payout of $25.50 is on its way", "TRX-9")),
            ("payout_rejected", {"reason": "Bank <closed>"}, ("Your payout request of $25.50 was not paid", "Bank")),
            ("payout_requested_admin", {}, ("Payout requested: $25.50", "/admin/payouts")),
            (
                "payout_requested_admin",
                {"seller_name": "Ada <L>", "seller_email": "ada@example.com"},
                ("Payout requested: $25.50 for Ada <L>", "ada@example.com"),
            ),
        ],
    )
    def test_templates_render(self, app, template: str, extra: dict, expected: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
        render = jinja_renderer(app.jinja_env, app_url="https://chatlink.example")
        context = {"amount": "$25.50", "amountCents": 2550, "currency": "usd", "payoutId": "p1", **extra}
        rendered = render(template, context)
        subject, needle = expected
        assert rendered.subject == subject
        assert needle in rendered.text_body and needle in rendered.html_body
        assert "<closed>" not in rendered.html_body  # the HTML is escaped
