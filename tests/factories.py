"""factory_boy factories bound to the current test's session (see conftest)."""

from __future__ import annotations

from datetime import timedelta

import factory
from factory.alchemy import SQLAlchemyModelFactory
from sqlalchemy.orm import Session

from app.db import utcnow
from app.models import Profile, Role, User

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
