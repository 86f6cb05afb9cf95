"""Shared by the Connect payout tests: a seller with a balance and a Connect account."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.integrations.builtin_connect import BuiltinConnect
from app.integrations.connect import ConnectGateway
from app.models import ConnectAccount, LedgerEntry, OutboxEmail, User
from app.services import ledger
from tests.factories import CallRequestFactory, UserFactory

METADATA = {"app": "chatlink", "env": "test"}


def fund(session: Session, seller: User, *amounts: int) -> None:
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


def connected_seller(
    session: Session, gateway: ConnectGateway, *, enabled: bool = True, balance: int = 0, seller: User | None = None
) -> tuple[User, ConnectAccount]:
    """A seller with a Connect account at ``gateway`` (onboarded or not) and ``balance`` cents earned.
    The built-in twin's account is onboarded too; a fake Stripe's is set with ``fake.set_account``."""
    seller = seller or UserFactory()
    account_id = gateway.create_account(
        email=seller.email,
        country="US",
        recipient=False,
        metadata={**METADATA, "seller_id": str(seller.id)},
        idempotency_key=f"account:{seller.id}",
    )
    if enabled and isinstance(gateway, BuiltinConnect):
        gateway.complete_onboarding(account_id)
    account = ConnectAccount(seller_id=seller.id, stripe_account_id=account_id, country="US", payouts_enabled=enabled)
    session.add(account)
    session.flush()
    if balance:
        fund(session, seller, balance)
    return seller, account


def available(session: Session, seller: User) -> int:
    return ledger.available_cents(session, seller.id, "usd")


def ledger_kinds(session: Session, seller: User) -> list[tuple[str, int]]:
    rows = session.scalars(
        select(LedgerEntry).where(LedgerEntry.seller_id == seller.id).order_by(LedgerEntry.created_at, LedgerEntry.id)
    )
    return [(row.kind.value, int(row.amount_cents)) for row in rows]


def emails(session: Session, template: str, recipient: str) -> list[OutboxEmail]:
    return list(
        session.scalars(select(OutboxEmail).where(OutboxEmail.template == template, OutboxEmail.recipient == recipient))
    )
