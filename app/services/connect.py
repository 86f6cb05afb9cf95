"""A seller's payout set-up: Stripe Connect Express onboarding, the account's state, the schedule.

One Connect account per seller (UNIQUE ``seller_id``; the creation's idempotency key is
``account:<seller id>``): starting again makes a new Account Link for the same account. The
account's state (details submitted, payouts enabled, requirements due) is never taken from a
webhook's body: ``account.updated`` makes ``app.services.connect_events`` fetch the account and
``sync_account`` store what Stripe says now, so events may arrive twice or in any order.

Where a payout goes (``destination_mode``): by Transfer to a Connect account whose payouts are
enabled, else to the manual method an admin pays by hand (``app.services.payout_methods``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.integrations.connect import AccountSnapshot, ConnectGateway
from app.models import ConnectAccount, PayoutSchedule, PayoutSettings, Profile, User
from app.refusals import Conflict, Invalid, NotFound
from app.services import payout_methods
from app.services.audit import record_event, user_actor
from app.services.checkout import APP_TAG
from app.services.payout_methods import MethodView

# Where Stripe sends the seller back: ``return_url`` when they leave onboarding (finished or
# not: the webhook says which), ``refresh_url`` when the link expired or was used already.
RETURN_PATH = "/payouts/setup?connect=return"
REFRESH_PATH = "/payouts/setup/refresh"


@dataclass(frozen=True)
class PayoutAccountView:
    """The seller's payout set-up, as ``GET /api/payouts/account`` and the pages show it."""

    mode: str  # connect | manual | none: where the next payout goes
    payouts_enabled: bool
    requirements_due: list[str]
    schedule: PayoutSchedule
    account: ConnectAccount | None
    method: MethodView | None
    connect_countries: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "payoutsEnabled": self.payouts_enabled,
            "requirementsDue": list(self.requirements_due),
            "schedule": self.schedule.value,
            "connect": None
            if self.account is None
            else {
                "accountId": self.account.stripe_account_id,
                "country": self.account.country,
                "detailsSubmitted": self.account.details_submitted,
                "payoutsEnabled": self.account.payouts_enabled,
            },
            "method": self.method.as_json() if self.method else None,
            "connectAvailable": bool(self.connect_countries),
        }


@dataclass(frozen=True)
class SellerPayoutRow:
    seller_id: uuid.UUID
    email: str
    display_name: str | None
    account: ConnectAccount | None
    settings: PayoutSettings | None

    @property
    def view(self) -> PayoutAccountView:
        return build_view(self.account, self.settings, connect_countries=())


def sellers_payout_state(session: Session, *, limit: int = 200) -> list[SellerPayoutRow]:
    """Every seller who has set up anything for payouts, newest first (for the admin)."""
    rows = session.execute(
        select(User.id, User.email, Profile.display_name, ConnectAccount, PayoutSettings)
        .outerjoin(Profile, Profile.user_id == User.id)
        .outerjoin(ConnectAccount, ConnectAccount.seller_id == User.id)
        .outerjoin(PayoutSettings, PayoutSettings.seller_id == User.id)
        .where(or_(ConnectAccount.id.is_not(None), PayoutSettings.id.is_not(None)))
        .order_by(User.created_at.desc(), User.id)
        .limit(limit)
    )
    return [SellerPayoutRow(*row) for row in rows]


def account_of(session: Session, seller_id: uuid.UUID) -> ConnectAccount | None:
    return session.scalar(select(ConnectAccount).where(ConnectAccount.seller_id == seller_id))


def destination_mode(account: ConnectAccount | None, method: MethodView | None) -> str:
    """``connect`` when Stripe can take the payout, ``manual`` when an admin can, else ``none``.
    A Connect account still in onboarding counts as ``connect`` unless a manual method exists."""
    if account is not None and (account.payouts_enabled or method is None):
        return "connect"
    return "manual" if method is not None else "none"


def payout_account(session: Session, seller_id: uuid.UUID, *, connect_countries: tuple[str, ...]) -> PayoutAccountView:
    settings = session.scalar(select(PayoutSettings).where(PayoutSettings.seller_id == seller_id))
    return build_view(account_of(session, seller_id), settings, connect_countries=connect_countries)


def build_view(
    account: ConnectAccount | None, settings: PayoutSettings | None, *, connect_countries: tuple[str, ...]
) -> PayoutAccountView:
    method = payout_methods.method_view(settings)
    mode = destination_mode(account, method)
    return PayoutAccountView(
        mode=mode,
        payouts_enabled=(account is not None and account.payouts_enabled) or mode == "manual",
        requirements_due=list(account.requirements_due) if account is not None else [],
        schedule=settings.schedule if settings is not None else PayoutSchedule.MANUAL,
        account=account,
        method=method,
        connect_countries=connect_countries,
    )


def start_onboarding(
    session: Session,
    seller_id: uuid.UUID,
    *,
    gateway: ConnectGateway,
    country: str | None,
    connect_countries: tuple[str, ...],
    app_url: str,
    app_env: str,
    now: datetime,
) -> str:
    """The URL of a fresh Account Link for the seller's Express account, created on first use."""
    if not connect_countries:
        raise Conflict("connect_unavailable", "Stripe payouts are not offered here: add a bank account or PayPal.")
    # The seller's row lock makes two clicks at once create one account (the idempotency key
    # would give both the same account anyway; the lock keeps the database row single too).
    seller = session.execute(select(User).where(User.id == seller_id).with_for_update()).scalar_one_or_none()
    if seller is None or seller.deleted_at is not None:
        raise NotFound("not_found", "No such seller.")
    account = account_of(session, seller_id) or _create_account(
        session, seller, gateway=gateway, country=country, connect_countries=connect_countries, app_env=app_env
    )
    return gateway.create_account_link(
        account.stripe_account_id, refresh_url=app_url + REFRESH_PATH, return_url=app_url + RETURN_PATH
    )


def refresh_link(session: Session, seller_id: uuid.UUID, *, gateway: ConnectGateway, app_url: str) -> str:
    """A new Account Link for an existing account (Stripe's ``refresh_url`` is a GET: it never
    creates an account, so a link planted on another site cannot start onboarding for a seller)."""
    account = account_of(session, seller_id)
    if account is None:
        raise Conflict("no_account", "Start setting up payouts first.")
    return gateway.create_account_link(
        account.stripe_account_id, refresh_url=app_url + REFRESH_PATH, return_url=app_url + RETURN_PATH
    )


def _create_account(
    session: Session,
    seller: User,
    *,
    gateway: ConnectGateway,
    country: str | None,
    connect_countries: tuple[str, ...],
    app_env: str,
) -> ConnectAccount:
    chosen = _supported_country(country, connect_countries)
    account_id = gateway.create_account(
        email=seller.email,
        country=chosen,
        # Cross-border transfers need the recipient service agreement.
        recipient=chosen != connect_countries[0],
        metadata={"app": APP_TAG, "env": app_env, "seller_id": str(seller.id)},
        idempotency_key=f"account:{seller.id}",
    )
    account = ConnectAccount(seller_id=seller.id, stripe_account_id=account_id, country=chosen)
    session.add(account)
    session.flush()
    record_event(
        session,
        "payout.connect_account_created",
        ref_id=seller.id,
        actor=user_actor(seller.id),
        payload={"accountId": account_id, "country": chosen},
    )
    return account


def _supported_country(country: str | None, supported: tuple[str, ...]) -> str:
    chosen = (country or supported[0]).strip().upper()
    if chosen not in supported:
        raise Invalid(
            "country_not_supported",
            "Stripe payouts are not available in your country yet: add a bank account or PayPal instead.",
            field="country",
        )
    return chosen


def login_link(session: Session, seller_id: uuid.UUID, *, gateway: ConnectGateway) -> str:
    """A single-use link into the seller's Express dashboard (payouts to their bank, tax forms)."""
    account = account_of(session, seller_id)
    if account is None or not account.details_submitted:
        raise Conflict("onboarding_incomplete", "Finish setting up Stripe payouts first.")
    return gateway.create_login_link(account.stripe_account_id)


def set_schedule(session: Session, seller_id: uuid.UUID, schedule: object, *, now: datetime) -> PayoutSchedule:
    if schedule not in {item.value for item in PayoutSchedule}:
        raise Invalid("invalid", "Choose manual or weekly payouts.", field="schedule")
    settings = payout_methods.settings_for(session, seller_id, lock=True)
    chosen = PayoutSchedule(str(schedule))
    if settings.schedule != chosen:
        settings.schedule = chosen
        record_event(
            session,
            "payout.schedule_changed",
            ref_id=seller_id,
            actor=user_actor(seller_id),
            payload={"schedule": chosen.value},
        )
    return chosen


def sync_account(session: Session, account: ConnectAccount, snapshot: AccountSnapshot, *, now: datetime) -> bool:
    """Store what Stripe says of the account now (the caller holds the row). True if it changed."""
    state = {
        "details_submitted": snapshot.details_submitted,
        "charges_enabled": snapshot.charges_enabled,
        "payouts_enabled": snapshot.payouts_enabled,
        "requirements_due": list(snapshot.requirements_due),
        "disabled_reason": snapshot.disabled_reason,
    }
    changed = any(getattr(account, key) != value for key, value in state.items())
    for key, value in state.items():
        setattr(account, key, value)
    account.synced_at = now
    if changed:
        record_event(
            session,
            "payout.connect_account_updated",
            ref_id=account.seller_id,
            actor="stripe",
            payload={
                "accountId": account.stripe_account_id,
                "payoutsEnabled": snapshot.payouts_enabled,
                "requirementsDue": list(snapshot.requirements_due),
            },
        )
    return changed
