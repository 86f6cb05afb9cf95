"""Payouts under concurrency, with real commits and the real Stripe adapter against the fake Stripe:
20 payout requests at once through the API give one transfer per accepted request and never take
the balance below zero; an automatic payout racing the seller's own request never transfers the
same money twice; two workers sending the same payout make one Transfer."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import func, select

from app.db import db, utcnow
from app.integrations.connect import StripeConnect
from app.models import LedgerEntry, PayoutRequest, PayoutTransfer, TransferState, User
from app.services import automatic_payouts, connect, payouts, transfers
from tests.conftest import csrf_token, login
from tests.connect_support import connected_seller
from tests.fakes.stripe_api import FakeStripe

REQUESTS = 20
AMOUNT = 1500
BALANCE = 10 * 1000  # room for six payouts of 1500, not seven


@pytest.fixture
def fake_stripe():  # type: ignore[no-untyped-def]
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def gateway(fake_stripe) -> StripeConnect:  # type: ignore[no-untyped-def]
    return StripeConnect("sk_test_fake", api_base=fake_stripe.url, timeout=10, max_network_retries=0)


def onboarded_seller(session, gateway, fake_stripe, balance: int) -> uuid.UUID:  # type: ignore[no-untyped-def]
    seller, account = connected_seller(session, gateway, balance=balance)
    fake_stripe.set_account(account.stripe_account_id, enabled=True)
    session.commit()
    return seller.id


def balance_now(seller_id: uuid.UUID) -> int:
    with db.session_scope() as session:
        total = session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.amount_cents), 0)).where(LedgerEntry.seller_id == seller_id)
        )
        return int(total or 0)


def run_all(targets: list) -> None:  # type: ignore[type-arg]
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)


def send_every_payout_twice_at_once(seller_id: uuid.UUID, gateway: StripeConnect) -> list[uuid.UUID]:
    """What two workers (a task and its redelivery, or the sweep) would do with every payout."""
    with db.session_scope() as session:
        ids = list(session.scalars(select(PayoutRequest.id).where(PayoutRequest.seller_id == seller_id)))

    def send(payout_id: uuid.UUID) -> None:
        with db.session_scope() as session:
            transfers.send_transfer(session, payout_id, gateway=gateway, app_env="test", now=utcnow())

    run_all([lambda payout_id=payout_id: send(payout_id) for payout_id in ids for _ in range(2)])
    return ids


def test_twenty_payout_requests_at_once(app, committed_db, gateway, fake_stripe, enqueued):
    seller_id = onboarded_seller(committed_db, gateway, fake_stripe, BALANCE)
    statuses: list[int] = []
    lowest: list[int] = []
    start = threading.Barrier(REQUESTS + 1)
    done = threading.Event()

    user = committed_db.get(User, seller_id)
    clients = []
    for _ in range(REQUESTS):
        client = app.test_client()
        login(client, user)
        clients.append((client, csrf_token(client)))

    def ask(client, token) -> None:  # type: ignore[no-untyped-def]
        start.wait()
        response = client.post("/api/payouts/request", json={"amountCents": AMOUNT}, headers={"X-CSRFToken": token})
        statuses.append(response.status_code)

    def watch() -> None:
        start.wait()
        while not done.is_set():
            lowest.append(balance_now(seller_id))

    watcher = threading.Thread(target=watch)
    watcher.start()
    run_all([lambda c=c, t=t: ask(c, t) for c, t in clients])
    done.set()
    watcher.join(timeout=30)

    accepted = statuses.count(201)
    assert accepted == BALANCE // AMOUNT
    assert sorted(set(statuses)) == [201, 422]
    assert min(lowest) >= 0 and balance_now(seller_id) == BALANCE - accepted * AMOUNT

    ids = send_every_payout_twice_at_once(seller_id, gateway)

    posted = fake_stripe.posts_to("/v1/transfers")
    assert len(ids) == accepted
    assert sorted(r.idempotency_key for r in posted) == sorted(f"transfer:{payout_id}" for payout_id in ids)
    assert len(fake_stripe.transfers) == accepted
    assert sum(t["amount"] for t in fake_stripe.transfers.values()) == accepted * AMOUNT
    sends = [args for name, args, _ in enqueued if name == "tasks.transfers.send_transfer"]
    assert sorted(sends) == sorted((str(payout_id),) for payout_id in ids)
    with db.session_scope() as session:
        states = session.scalars(select(PayoutTransfer.state).where(PayoutTransfer.seller_id == seller_id)).all()
        assert states == [TransferState.SENT] * accepted


def test_an_automatic_payout_racing_a_manual_request_never_transfers_twice(committed_db, gateway, fake_stripe):
    seller_id = onboarded_seller(committed_db, gateway, fake_stripe, 5000)
    connect.set_schedule(committed_db, seller_id, "weekly", now=utcnow())
    committed_db.commit()
    period = automatic_payouts.iso_period(utcnow())
    start = threading.Barrier(4)
    outcomes: list[str] = []

    def automatic() -> None:
        with db.session_scope() as session:
            start.wait()
            payout = automatic_payouts.run_automatic_payout(
                session, seller_id, period=period, default_currency="usd", now=utcnow()
            )
            outcomes.append("automatic" if payout else "automatic-nothing")

    def manual() -> None:
        session = db.new_session()
        try:
            start.wait()
            payouts.request_payout(session, seller_id, 3000, currency="usd", now=utcnow())
            session.commit()
            outcomes.append("manual")
        except Exception as error:  # the loser is refused for want of balance
            session.rollback()
            outcomes.append(getattr(error, "code", type(error).__name__))
        finally:
            session.close()

    # Two beats run the automatic payout while the seller asks for one by hand.
    run_all([automatic, automatic, manual, manual])

    assert outcomes.count("automatic") == 1
    assert balance_now(seller_id) >= 0
    ids = send_every_payout_twice_at_once(seller_id, gateway)
    with db.session_scope() as session:
        amounts = session.scalars(select(PayoutRequest.amount_cents).where(PayoutRequest.seller_id == seller_id)).all()
    assert sum(amounts) == 5000 - balance_now(seller_id) <= 5000
    assert len(fake_stripe.transfers) == len(ids) == len(amounts)
    assert sorted(t["amount"] for t in fake_stripe.transfers.values()) == sorted(amounts)
