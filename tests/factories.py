"""factory_boy factories bound to the current test's session (see conftest)."""

from __future__ import annotations

from datetime import timedelta

import factory
from factory.alchemy import SQLAlchemyModelFactory
from sqlalchemy.orm import Session

from app.db import utcnow
from app.models import CallRequest, PaymentState, Profile, RequestStatus, Role, Transaction, User

# bcrypt of PASSWORD at cost 4, precomputed so that building users stays fast.
PASSWORD = "correct horse battery"
PASSWORD_HASH = "$2b$04$58iHGXAzjnRGfS5v6YFjoexy8PF6XQQcLUKXH9VJwYhoMOle0NtqK"

_session: Session | None = None


def bind(session: Session) -> None:
    """Make every factory build into ``session`` (the current test's)."""
    global _session
    _session = session


class _Base(SQLAlchemyModelFactory):
    class Meta:
        abstract = True
        sqlalchemy_session_factory = lambda: _session  # noqa: E731
        sqlalchemy_session_persistence = "flush"


class UserFactory(_Base):
    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"seller{n}@example.com")
    password_hash = PASSWORD_HASH
    role = Role.SELLER
    email_verified_at = factory.LazyFunction(lambda: utcnow() - timedelta(days=1))


class AdminFactory(UserFactory):
    email = factory.Sequence(lambda n: f"admin{n}@example.com")
    role = Role.ADMIN


class ProfileFactory(_Base):
    class Meta:
        model = Profile

    user = factory.SubFactory(UserFactory)
    slug = factory.Sequence(lambda n: f"seller-{n}")
    display_name = factory.Sequence(lambda n: f"Seller {n}")
    bio = "I answer questions."
    price_cents = 1000
    currency = "usd"


class TransactionFactory(_Base):
    class Meta:
        model = Transaction
        exclude = ("seller",)

    # Pass seller=<User> to attach the transaction to an existing seller.
    seller = factory.SubFactory(UserFactory)
    seller_id = factory.SelfAttribute("seller.id")
    buyer_email = factory.Sequence(lambda n: f"buyer{n}@example.org")
    stripe_checkout_session_id = factory.Sequence(lambda n: f"cs_test_{n:08d}")
    stripe_payment_intent_id = factory.Sequence(lambda n: f"pi_test_{n:08d}")
    gross_cents = 1000
    platform_fee_cents = 200
    net_cents = 800
    currency = "usd"
    payment_state = PaymentState.HELD


class CallRequestFactory(_Base):
    class Meta:
        model = CallRequest

    transaction = factory.SubFactory(TransactionFactory)
    seller_id = factory.SelfAttribute("transaction.seller_id")
    buyer_email = factory.SelfAttribute("transaction.buyer_email")
    note = "Hello!"
    status = RequestStatus.PENDING
    expires_at = factory.LazyFunction(lambda: utcnow() + timedelta(days=1))
