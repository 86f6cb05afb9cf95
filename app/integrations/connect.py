"""Stripe Connect, for paying sellers: Express accounts, onboarding links and Transfers.

The money model is separate charges and transfers: buyers pay the platform (the hold-then-capture
flow of ``app.integrations.payments`` is unchanged) and a payout is a Transfer from the platform's
balance to the seller's connected account. ``ConnectGateway`` has two implementations with the same
Stripe-shaped answers: ``StripeConnect`` (here) when ``STRIPE_SECRET_KEY`` is set, otherwise the
built-in twin (``app.integrations.builtin_connect``), whose onboarding page is ``/dev/connect/<account>``.

Every call that creates something carries a deterministic idempotency key (``account:<seller id>``,
``transfer:<payout id>``), so a retried task never creates a second account or moves money twice.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Protocol

import stripe
from redis import Redis
from stripe.params import AccountCreateParams, AccountLinkCreateParams, TransferCreateParams

from app.config import Settings
from app.integrations.payments import PaymentError, _stripe_errors

__all__ = ["AccountSnapshot", "ConnectGateway", "PaymentError", "TransferRequest", "TransferSnapshot"]


@dataclass(frozen=True)
class AccountSnapshot:
    """What a (re-)fetched connected account says."""

    account_id: str
    details_submitted: bool
    charges_enabled: bool
    payouts_enabled: bool
    requirements_due: list[str]
    disabled_reason: str | None
    metadata: dict[str, str]


@dataclass(frozen=True)
class TransferRequest:
    amount_cents: int
    currency: str
    destination: str  # the connected account id
    transfer_group: str
    idempotency_key: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TransferSnapshot:
    transfer_id: str
    amount_cents: int
    amount_reversed_cents: int
    reversed: bool
    destination: str
    metadata: dict[str, str]


class ConnectGateway(Protocol):
    def create_account(
        self, *, email: str, country: str, recipient: bool, metadata: dict[str, str], idempotency_key: str
    ) -> str:
        """Create an Express account; returns its id (``acct_...``). ``recipient`` asks for the
        recipient service agreement, which cross-border transfers need."""
        ...

    def create_account_link(self, account_id: str, *, refresh_url: str, return_url: str) -> str:
        """A single-use, short-lived onboarding URL (make a new one each time)."""
        ...

    def create_login_link(self, account_id: str) -> str:
        """A single-use URL into the seller's Express dashboard."""
        ...

    def retrieve_account(self, account_id: str) -> AccountSnapshot: ...

    def create_transfer(self, request: TransferRequest) -> TransferSnapshot: ...

    def retrieve_transfer(self, transfer_id: str) -> TransferSnapshot: ...


def account_snapshot(account: dict[str, Any]) -> AccountSnapshot:
    requirements = account.get("requirements") or {}
    due = list(requirements.get("currently_due") or []) + [
        item for item in requirements.get("past_due") or [] if item not in (requirements.get("currently_due") or [])
    ]
    return AccountSnapshot(
        account_id=str(account["id"]),
        details_submitted=bool(account.get("details_submitted")),
        charges_enabled=bool(account.get("charges_enabled")),
        payouts_enabled=bool(account.get("payouts_enabled")),
        requirements_due=[str(item) for item in due],
        disabled_reason=requirements.get("disabled_reason"),
        metadata={str(k): str(v) for k, v in (account.get("metadata") or {}).items()},
    )


def transfer_snapshot(transfer: dict[str, Any]) -> TransferSnapshot:
    destination = transfer.get("destination")
    if isinstance(destination, dict):
        destination = destination.get("id")
    return TransferSnapshot(
        transfer_id=str(transfer["id"]),
        amount_cents=int(transfer.get("amount") or 0),
        amount_reversed_cents=int(transfer.get("amount_reversed") or 0),
        reversed=bool(transfer.get("reversed")),
        destination=str(destination or ""),
        metadata={str(k): str(v) for k, v in (transfer.get("metadata") or {}).items()},
    )


class StripeConnect:
    """The real thing, through stripe-python. ``api_base`` points it at a local fake in tests."""

    def __init__(
        self, api_key: str, *, api_base: str | None = None, timeout: float = 15.0, max_network_retries: int = 2
    ) -> None:
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=max_network_retries,
            http_client=stripe.RequestsClient(timeout=timeout),
        )

    def create_account(
        self, *, email: str, country: str, recipient: bool, metadata: dict[str, str], idempotency_key: str
    ) -> str:
        params: AccountCreateParams = {
            "type": "express",
            "country": country,
            "email": email,
            # Sellers only receive transfers; the platform takes the payments.
            "capabilities": {"transfers": {"requested": True}},
            "metadata": dict(metadata),
        }
        if recipient:
            params["tos_acceptance"] = {"service_agreement": "recipient"}
        with _stripe_errors():
            account = self.client.v1.accounts.create(
                params=params,
                options={"idempotency_key": idempotency_key},
            )
        return account.id

    def create_account_link(self, account_id: str, *, refresh_url: str, return_url: str) -> str:
        params: AccountLinkCreateParams = {
            "account": account_id,
            "refresh_url": refresh_url,
            "return_url": return_url,
            "type": "account_onboarding",
        }
        with _stripe_errors():
            link = self.client.v1.account_links.create(params=params)
        return link.url

    def create_login_link(self, account_id: str) -> str:
        with _stripe_errors():
            link = self.client.v1.accounts.login_links.create(account_id)
        return link.url

    def retrieve_account(self, account_id: str) -> AccountSnapshot:
        with _stripe_errors():
            account = self.client.v1.accounts.retrieve(account_id)
        return account_snapshot(account.to_dict())

    def create_transfer(self, request: TransferRequest) -> TransferSnapshot:
        params: TransferCreateParams = {
            "amount": request.amount_cents,
            "currency": request.currency,
            "destination": request.destination,
            "transfer_group": request.transfer_group,
            "metadata": dict(request.metadata),
        }
        with _stripe_errors():
            transfer = self.client.v1.transfers.create(
                params=params,
                options={"idempotency_key": request.idempotency_key},
            )
        return transfer_snapshot(transfer.to_dict())

    def retrieve_transfer(self, transfer_id: str) -> TransferSnapshot:
        with _stripe_errors():
            transfer = self.client.v1.transfers.retrieve(transfer_id)
        return transfer_snapshot(transfer.to_dict())


def connect_gateway(settings: Settings, redis: Redis) -> ConnectGateway:
    """Stripe when ``STRIPE_SECRET_KEY`` is set, else the built-in twin."""
    if settings.stripe_secret_key:
        return _stripe_connect(settings.stripe_secret_key, settings.stripe_api_base)
    # Imported here: the twin's module imports this one for the shared types.
    from app.integrations.builtin_connect import builtin_connect

    return builtin_connect(settings, redis)


@functools.lru_cache(maxsize=4)
def _stripe_connect(api_key: str, api_base: str | None) -> StripeConnect:
    # One client (and its connection pool) per key, shared by every request and task.
    return StripeConnect(api_key, api_base=api_base)
