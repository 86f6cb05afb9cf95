"""Demo data for a newcomer's first run: one live seller and one admin."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from app.models import Profile, Role, User
from app.services.accounts import create_user, find_user_by_email, hash_password

DEMO_SELLER_EMAIL = "demo-seller@example.com"
DEMO_SELLER_PASSWORD = "demo-seller-password"  # noqa: S105 (demo data, refused in production)
DEMO_ADMIN_EMAIL = "admin@example.com"
DEMO_ADMIN_PASSWORD = "demo-admin-password"  # noqa: S105 (demo data, refused in production)
DEMO_SLUG = "demo"
# With the default 20% fee one demo call earns $20: enough for a payout (at least $10), so a
# newcomer can try the whole path, from paying to asking for the money, with a single call.
DEMO_PRICE_CENTS = 2500


@dataclass(frozen=True)
class DemoLogin:
    role: str
    email: str
    password: str


def seed_demo(session: Session, *, now: datetime, currency: str) -> list[DemoLogin]:
    """Create (or reset the passwords of) the demo seller and admin. Safe to run again."""
    seller = _ensure_user(session, DEMO_SELLER_EMAIL, DEMO_SELLER_PASSWORD, Role.SELLER, now)
    if seller.profile is None:
        session.add(
            Profile(
                user_id=seller.id,
                slug=DEMO_SLUG,
                display_name="Demo Seller",
                bio="Ask me anything about building calm software.\nFive minutes, straight answers.",
                price_cents=DEMO_PRICE_CENTS,
                currency=currency,
            )
        )
    _ensure_user(session, DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD, Role.ADMIN, now)
    session.flush()
    return [
        DemoLogin("seller", DEMO_SELLER_EMAIL, DEMO_SELLER_PASSWORD),
        DemoLogin("admin", DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD),
    ]


def _ensure_user(session: Session, email: str, password: str, role: Role, now: datetime) -> User:
    user = find_user_by_email(session, email)
    if user is None:
        return create_user(session, email, password, role=role, verified_at=now)
    user.password_hash = hash_password(password)
    user.role = role
    user.email_verified_at = user.email_verified_at or now
    return user
