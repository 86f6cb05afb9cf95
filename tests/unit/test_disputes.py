"""Disputes settle in the ledger: ``charge.dispute.created`` holds the seller's share, ``closed``
gives it back and, when lost, takes it for good; repeat-safe in any order. The events are the
real Stripe body in tests/fixtures/stripe/charge.dispute.created.json, pointed at our payment
(a ``charge.dispute.closed`` event carries the same Dispute object with its final status)."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from app.db import utcnow
from app.integrations.builtin_payments import BuiltinGateway, builtin_gateway
from app.models import CallRequest, EventLog, LedgerEntry, LedgerKind, PaymentState, RequestStatus, Transaction
from app.refusals import Invalid
from app.services import ledger, payouts
from tests.factories import ProfileFactory
from tests.unit.test_stripe_events import deliver, event, paid_session

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "stripe" / "charge.dispute.created.json"


GROSS, NET = 1500, 1200  # the platform keeps 20% (tests/unit/test_stripe_events.py's FEE_BPS)


@pytest.fixture
def builtin(settings, redis) -> BuiltinGateway:  # type: ignore[no-untyped-def]
    return builtin_gateway(settings, redis, notify=lambda event: None)


@pytest.fixture
def seller(db_session):  # type: ignore[no-untyped-def]
    return ProfileFactory(display_name="Grace Hopper", price_cents=GROSS)


@pytest.fixture
def completed(db_session, builtin, seller) -> Transaction:  # type: ignore[no-untyped-def]
    """A 15.00 call, charged at checkout, that took place: the seller earned 12.00."""
    session = paid_session(db_session, builtin, seller, manual=False)
    deliver(db_session, builtin, event("checkout.session.completed", session))
    call = db_session.scalar(select(CallRequest))
    call.status, call.started_at, call.ended_at = RequestStatus.COMPLETED, utcnow(), utcnow()
    db_session.flush()
    assert ledger.record_earning(db_session, call, now=utcnow())
    return call.transaction


def dispute_event(transaction: Transaction, kind: str, *, status: str, amount: int | None = None) -> dict:
    body = copy.deepcopy(json.loads(FIXTURE.read_text()))
    dispute = body["data"]["object"]
    dispute.update(payment_intent=transaction.stripe_payment_intent_id, charge=None, status=status)
    dispute["amount"] = transaction.gross_cents if amount is None else amount
    body.update(id=f"evt_{uuid.uuid4().hex[:24]}", type=f"charge.dispute.{kind}")
    return body


def rows(db_session, transaction: Transaction) -> list[tuple[LedgerKind, int]]:  # type: ignore[no-untyped-def]
    call_id = db_session.scalar(select(CallRequest.id).where(CallRequest.transaction_id == transaction.id))
    entries = db_session.scalars(
        select(LedgerEntry)
        .where(LedgerEntry.call_request_id == call_id, LedgerEntry.kind != LedgerKind.EARNING)
        .order_by(LedgerEntry.created_at, LedgerEntry.amount_cents)
    )
    return sorted((entry.kind, int(entry.amount_cents)) for entry in entries)


def state(db_session, transaction: Transaction) -> PaymentState:  # type: ignore[no-untyped-def]
    db_session.expire_all()
    return db_session.get(Transaction, transaction.id).payment_state


def balance(db_session, seller) -> int:  # type: ignore[no-untyped-def]
    return ledger.available_cents(db_session, seller.user_id, "usd")


class TestOpened:
    def test_holds_the_sellers_share_once(self, db_session, builtin, seller, completed) -> None:
        created = dispute_event(completed, "created", status="needs_response")
        deliver(db_session, builtin, created)
        deliver(db_session, builtin, {**created, "id": "evt_same_dispute_again"})

        assert state(db_session, completed) == PaymentState.DISPUTED
        assert rows(db_session, completed) == [(LedgerKind.DISPUTE_HOLD, -NET)]
        assert balance(db_session, seller) == 0

    def test_a_partial_dispute_holds_the_share_it_stands_for(self, db_session, builtin, seller, completed) -> None:
        deliver(db_session, builtin, dispute_event(completed, "created", status="needs_response", amount=500))
        assert rows(db_session, completed) == [(LedgerKind.DISPUTE_HOLD, -400)]  # 1200 * 500 / 1500

    def test_a_payment_never_earned_is_disputed_without_touching_the_balance(self, db_session, builtin, seller):
        session = paid_session(db_session, builtin, seller, manual=False)
        deliver(db_session, builtin, event("checkout.session.completed", session))
        transaction = db_session.scalar(select(Transaction))

        deliver(db_session, builtin, dispute_event(transaction, "created", status="needs_response"))

        assert state(db_session, transaction) == PaymentState.DISPUTED
        assert rows(db_session, transaction) == []


class TestClosed:
    def test_lost_releases_the_hold_and_reverses_the_share(self, db_session, builtin, seller, completed) -> None:
        deliver(db_session, builtin, dispute_event(completed, "created", status="needs_response"))
        closed = dispute_event(completed, "closed", status="lost")
        deliver(db_session, builtin, closed)
        deliver(db_session, builtin, {**closed, "id": "evt_closed_again"})

        assert state(db_session, completed) == PaymentState.CHARGED_BACK
        assert rows(db_session, completed) == sorted(
            [(LedgerKind.DISPUTE_HOLD, -NET), (LedgerKind.DISPUTE_RELEASE, NET), (LedgerKind.REVERSAL, -NET)]
        )
        assert balance(db_session, seller) == 0
        logs = db_session.scalars(select(EventLog.payload).where(EventLog.type == "payment.dispute_closed")).all()
        assert [log["status"] for log in logs] == ["lost"]

    def test_won_gives_the_hold_back(self, db_session, builtin, seller, completed) -> None:
        deliver(db_session, builtin, dispute_event(completed, "created", status="needs_response"))
        deliver(db_session, builtin, dispute_event(completed, "closed", status="won"))

        assert state(db_session, completed) == PaymentState.CAPTURED
        assert rows(db_session, completed) == [(LedgerKind.DISPUTE_HOLD, -NET), (LedgerKind.DISPUTE_RELEASE, NET)]
        assert balance(db_session, seller) == NET

    def test_closed_before_created_settles_the_same_and_the_late_created_changes_nothing(
        self, db_session, builtin, seller, completed
    ) -> None:
        deliver(db_session, builtin, dispute_event(completed, "closed", status="lost"))
        settled = rows(db_session, completed)
        deliver(db_session, builtin, dispute_event(completed, "created", status="needs_response"))

        assert state(db_session, completed) == PaymentState.CHARGED_BACK
        assert (
            rows(db_session, completed)
            == settled
            == sorted([(LedgerKind.DISPUTE_HOLD, -NET), (LedgerKind.DISPUTE_RELEASE, NET), (LedgerKind.REVERSAL, -NET)])
        )


class TestPayoutsWait:
    def test_a_balance_below_zero_refuses_payouts_until_it_is_covered(self, db_session, builtin, seller, completed):
        # The seller was paid out before the dispute was lost: the balance goes negative.
        payouts.request_payout(db_session, seller.user_id, NET, currency="usd", now=utcnow())
        deliver(db_session, builtin, dispute_event(completed, "closed", status="lost"))
        assert balance(db_session, seller) == -NET

        with pytest.raises(Invalid) as refused:
            payouts.request_payout(db_session, seller.user_id, 1000, currency="usd", now=utcnow())
        assert refused.value.code == "insufficient_balance"
        assert balance(db_session, seller) == -NET


class TestAdminSees:
    def test_the_disputes_page_shows_the_outcome_and_its_effect_on_the_balance(
        self, app, db_session, builtin, seller, completed
    ) -> None:
        from tests.conftest import login
        from tests.factories import AdminFactory

        deliver(db_session, builtin, dispute_event(completed, "closed", status="lost"))
        client = app.test_client()
        login(client, AdminFactory())

        html = client.get("/admin/disputes").get_data(as_text=True)
        row = html[html.index(f'id="dispute-{completed.id}"') :]
        row = row[: row.index("</tr>")]
        assert '<td class="dispute-state">lost</td>' in row
        assert "dispute hold \u2212$12.00" in row and "dispute release $12.00" in row
        assert "reversal \u2212$12.00" in row and "net \u2212$12.00" in row
