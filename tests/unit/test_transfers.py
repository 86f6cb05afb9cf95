"""Payouts to Connect sellers as Stripe Transfers: routing, sending, failure, reversal, the admin's
retry and the sweep; against the built-in twin on real Redis."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.db import utcnow
from app.integrations.builtin_connect import BuiltinConnect, builtin_connect
from app.integrations.connect import PaymentError, TransferRequest, TransferSnapshot
from app.models import EventLog, OutboxEmail, PayoutStatus, PayoutTransfer, TransferState
from app.refusals import Conflict, Invalid
from app.services import payouts, transfers
from tests.connect_support import available, connected_seller, emails, fund, ledger_kinds
from tests.factories import AdminFactory, UserFactory

SEND = "tasks.transfers.send_transfer"


@pytest.fixture
def twin(settings, redis) -> BuiltinConnect:  # type: ignore[no-untyped-def]
    return builtin_connect(settings, redis, notify=lambda event: None)


def send(session, payout_id: uuid.UUID, gateway) -> TransferState | None:  # type: ignore[no-untyped-def]
    return transfers.send_transfer(session, payout_id, gateway=gateway, app_env="test", now=utcnow())


def transfer_of(session, payout_id: uuid.UUID) -> PayoutTransfer:  # type: ignore[no-untyped-def]
    return session.scalars(select(PayoutTransfer).where(PayoutTransfer.payout_request_id == payout_id)).one()


class TestRouting:
    def test_a_connect_seller_is_paid_by_transfer_in_the_payouts_transaction(self, db_session, twin, enqueued):
        seller, account = connected_seller(db_session, twin, balance=3000)

        payout = payouts.request_payout(db_session, seller.id, 2500, currency="usd", now=utcnow())

        row = transfer_of(db_session, payout.id)
        assert (row.state, row.destination, row.amount_cents, row.currency) == (
            TransferState.SENDING,
            account.stripe_account_id,
            2500,
            "usd",
        )
        assert row.idempotency_key == f"transfer:{payout.id}"
        assert row.transfer_group == f"payout:{payout.id}"
        assert ledger_kinds(db_session, seller)[-1] == ("payout", -2500)
        assert available(db_session, seller) == 500
        db_session.commit()
        assert (SEND, (str(payout.id),)) in [(name, args) for name, args, _ in enqueued]
        # No admin is asked to pay it by hand.
        assert "payout_requested_admin" not in [e.template for e in db_session.scalars(select(OutboxEmail))]

    def test_a_seller_still_in_onboarding_goes_to_the_admin(self, db_session, twin):
        AdminFactory()
        seller, _ = connected_seller(db_session, twin, enabled=False, balance=3000)

        payout = payouts.request_payout(db_session, seller.id, 2500, currency="usd", now=utcnow())

        assert not transfers.is_transfer_payout(db_session, payout.id)
        assert "payout_requested_admin" in [e.template for e in db_session.scalars(select(OutboxEmail))]

    def test_an_admin_cannot_mark_a_transfer_payout_processed_or_reject_it(self, db_session, twin):
        admin = AdminFactory()
        seller, _ = connected_seller(db_session, twin, balance=3000)
        payout = payouts.request_payout(db_session, seller.id, 2500, currency="usd", now=utcnow())

        with pytest.raises(Conflict):
            payouts.process_payout(db_session, payout.id, admin_id=admin.id, reference="X", now=utcnow())
        with pytest.raises(Conflict):
            payouts.reject_payout(db_session, payout.id, admin_id=admin.id, reason="no", now=utcnow())


class TestSend:
    def test_a_sent_transfer_pays_the_payout_with_the_transfer_id_as_reference(self, db_session, twin):
        seller, account = connected_seller(db_session, twin, balance=3000)
        payout = payouts.request_payout(db_session, seller.id, 2500, currency="usd", now=utcnow())

        assert send(db_session, payout.id, twin) == TransferState.SENT

        row = transfer_of(db_session, payout.id)
        db_session.refresh(payout)
        assert row.state == TransferState.SENT and row.stripe_transfer_id.startswith("tr_test_")
        assert (payout.status, payout.reference) == (PayoutStatus.PROCESSED, row.stripe_transfer_id)
        (sent,) = twin.transfers(account.stripe_account_id)
        assert sent["metadata"] == {
            "app": "chatlink",
            "env": "test",
            "payout_id": str(payout.id),
            "seller_id": str(seller.id),
        }
        assert sent["transfer_group"] == f"payout:{payout.id}"
        (email,) = emails(db_session, "payout_transferred", seller.email)
        assert email.context["transferId"] == row.stripe_transfer_id

    def test_sending_again_changes_nothing(self, db_session, twin):
        seller, account = connected_seller(db_session, twin, balance=3000)
        payout = payouts.request_payout(db_session, seller.id, 2500, currency="usd", now=utcnow())
        send(db_session, payout.id, twin)

        assert send(db_session, payout.id, twin) is None
        assert len(twin.transfers(account.stripe_account_id)) == 1

    def test_a_refused_transfer_fails_returns_the_amount_and_tells_the_seller(self, db_session, twin):
        seller, account = connected_seller(db_session, twin, balance=3000)
        payout = payouts.request_payout(db_session, seller.id, 2500, currency="usd", now=utcnow())
        twin.fail_next_transfer(account.stripe_account_id)

        assert send(db_session, payout.id, twin) == TransferState.FAILED

        db_session.refresh(payout)
        assert payout.status == PayoutStatus.FAILED
        assert transfer_of(db_session, payout.id).error.startswith("balance_insufficient")
        assert ledger_kinds(db_session, seller)[-2:] == [("payout", -2500), ("reversal", 2500)]
        assert available(db_session, seller) == 3000
        assert len(emails(db_session, "payout_failed", seller.email)) == 1

    def test_a_transient_error_leaves_it_sending_for_a_retry_with_the_same_key(self, db_session, twin):
        seller, _ = connected_seller(db_session, twin, balance=3000)
        payout = payouts.request_payout(db_session, seller.id, 2500, currency="usd", now=utcnow())
        keys: list[str] = []

        class Down:
            def create_transfer(self, request: TransferRequest) -> TransferSnapshot:
                keys.append(request.idempotency_key)
                raise PaymentError("Stripe is down", transient=True)

        with pytest.raises(PaymentError):
            send(db_session, payout.id, Down())
        assert transfer_of(db_session, payout.id).state == TransferState.SENDING

        assert send(db_session, payout.id, twin) == TransferState.SENT
        assert keys == [f"transfer:{payout.id}"]


class TestReversal:
    def test_a_reversed_transfer_returns_the_amount_once_and_tells_the_seller(self, db_session, twin):
        seller, _ = connected_seller(db_session, twin, balance=3000)
        payout = payouts.request_payout(db_session, seller.id, 2500, currency="usd", now=utcnow())
        send(db_session, payout.id, twin)
        transfer_id = transfer_of(db_session, payout.id).stripe_transfer_id
        twin.reverse_transfer(transfer_id)
        snapshot = twin.retrieve_transfer(transfer_id)

        assert transfers.apply_reversal(db_session, snapshot, now=utcnow()) is True
        assert transfers.apply_reversal(db_session, snapshot, now=utcnow()) is False

        db_session.refresh(payout)
        assert payout.status == PayoutStatus.REVERSED
        assert ledger_kinds(db_session, seller)[-1] == ("reversal", 2500)
        assert available(db_session, seller) == 3000
        assert len(emails(db_session, "payout_reversed", seller.email)) == 1

    def test_a_reversal_before_the_send_was_recorded_still_lands(self, db_session, twin):
        """The send died after Stripe made the Transfer: the reversal completes the row from what
        Stripe says, and a later send finds nothing to do."""
        seller, account = connected_seller(db_session, twin, balance=3000)
        payout = payouts.request_payout(db_session, seller.id, 2500, currency="usd", now=utcnow())
        row = transfer_of(db_session, payout.id)
        made = twin.create_transfer(
            TransferRequest(
                amount_cents=2500,
                currency="usd",
                destination=account.stripe_account_id,
                transfer_group=row.transfer_group,
                idempotency_key=row.idempotency_key,
                metadata={"app": "chatlink", "env": "test", "payout_id": str(payout.id)},
            )
        )
        twin.reverse_transfer(made.transfer_id)

        assert transfers.apply_reversal(db_session, twin.retrieve_transfer(made.transfer_id), now=utcnow())

        assert send(db_session, payout.id, twin) is None
        db_session.refresh(payout)
        assert payout.status == PayoutStatus.REVERSED
        assert available(db_session, seller) == 3000


class TestRetry:
    def test_an_admin_retries_a_failed_transfer_once_with_a_new_key(self, db_session, twin, enqueued):
        admin = AdminFactory()
        seller, account = connected_seller(db_session, twin, balance=3000)
        payout = payouts.request_payout(db_session, seller.id, 2500, currency="usd", now=utcnow())
        twin.fail_next_transfer(account.stripe_account_id)
        send(db_session, payout.id, twin)

        retry = transfers.retry_transfer(db_session, payout.id, admin_id=admin.id, now=utcnow())

        assert retry.id != payout.id and retry.amount_cents == 2500
        assert transfer_of(db_session, retry.id).idempotency_key == f"transfer:{retry.id}"
        assert send(db_session, retry.id, twin) == TransferState.SENT
        assert available(db_session, seller) == 500
        audit = db_session.scalars(select(EventLog).where(EventLog.type == "admin.transfer_retried")).one()
        assert audit.actor == f"user:{admin.id}" and audit.ref_id == str(payout.id)
        with pytest.raises(Conflict):
            transfers.retry_transfer(db_session, payout.id, admin_id=admin.id, now=utcnow())

    def test_a_retry_needs_the_balance_to_cover_it(self, db_session, twin):
        admin = AdminFactory()
        seller, account = connected_seller(db_session, twin, balance=3000)
        payout = payouts.request_payout(db_session, seller.id, 2500, currency="usd", now=utcnow())
        twin.fail_next_transfer(account.stripe_account_id)
        send(db_session, payout.id, twin)
        payouts.request_payout(db_session, seller.id, 3000, currency="usd", now=utcnow())  # spent again

        with pytest.raises(Invalid):
            transfers.retry_transfer(db_session, payout.id, admin_id=admin.id, now=utcnow())
        assert available(db_session, seller) == 0


class TestSweep:
    def test_a_transfer_left_sending_is_published_again_with_backoff(self, db_session, twin, settings, enqueued):
        seller, _ = connected_seller(db_session, twin, balance=3000)
        payout = payouts.request_payout(db_session, seller.id, 2500, currency="usd", now=utcnow())
        later = utcnow() + timedelta(minutes=3)

        assert transfers.resend_stuck_transfers(db_session, later, settings) == {"transfers_resent": 1}
        assert transfers.resend_stuck_transfers(db_session, later + timedelta(minutes=1), settings) == {}
        db_session.commit()
        assert [args for name, args, _ in enqueued if name == SEND][-1] == (str(payout.id),)

    def test_recent_and_finished_transfers_are_left_alone(self, db_session, twin, settings):
        seller, _ = connected_seller(db_session, twin, balance=6000)
        sent = payouts.request_payout(db_session, seller.id, 2500, currency="usd", now=utcnow())
        send(db_session, sent.id, twin)
        payouts.request_payout(db_session, seller.id, 2500, currency="usd", now=utcnow())

        assert transfers.resend_stuck_transfers(db_session, utcnow(), settings) == {}


def test_a_seller_without_connect_is_not_affected(db_session):
    seller = UserFactory()
    fund(db_session, seller, 3000)
    payout = payouts.request_payout(db_session, seller.id, 2500, currency="usd", now=utcnow())
    assert not transfers.is_transfer_payout(db_session, payout.id)
