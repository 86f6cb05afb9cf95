"""The built-in Stripe Connect: Stripe's part of seller payouts, played by the app in test mode.

It answers the ``ConnectGateway`` calls from its own state in Redis, with Stripe's shapes and
idempotency. An Account Link opens ``/dev/connect/<account>?link=...`` (single-use, short-lived, as
Stripe's are), where the seller completes onboarding or leaves requirements due; each change is
announced as an ``account.updated`` event that carries ``account`` and is signed with the Connect
endpoint's secret, as Stripe sends events of connected accounts. Transfers are recorded, can be made
to fail (the next one to an account) and can be reversed (``transfer.reversed``, a platform event).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, cast

import stripe
from redis import Redis

from app.config import Settings
from app.integrations.builtin_payments import BUILTIN_TTL_SECONDS, BuiltinGateway, EventSink, _new_id, _public
from app.integrations.connect import (
    AccountSnapshot,
    TransferRequest,
    TransferSnapshot,
    account_snapshot,
    transfer_snapshot,
)
from app.integrations.payments import PaymentError

LINK_TTL_SECONDS = 300  # Stripe's Account Links expire within minutes
PAGE_SESSION_TTL_SECONDS = 3600
# What Stripe typically still wants from an individual who stopped half-way.
REQUIREMENTS_LEFT_DUE = ["individual.verification.document", "external_account"]
INITIAL_REQUIREMENTS = ["business_type", "external_account", "individual.dob.day", "tos_acceptance.date"]


class BuiltinConnect(BuiltinGateway):
    """Stripe Connect Express, played by the app (no ``STRIPE_SECRET_KEY``)."""

    # The ConnectGateway interface.

    def create_account(
        self, *, email: str, country: str, recipient: bool, metadata: dict[str, str], idempotency_key: str
    ) -> str:
        fingerprint = json.dumps([email, country, recipient, metadata], sort_keys=True)
        account = self._idempotent(
            idempotency_key,
            fingerprint,
            lock=idempotency_key,
            action=lambda: self._new_account(email, country, metadata),
        )
        return str(account["id"])

    def create_account_link(self, account_id: str, *, refresh_url: str, return_url: str) -> str:
        account = self._get("acct", account_id)
        account.update(_refresh_url=refresh_url, _return_url=return_url)
        self._save("acct", account)
        return self._link(account_id, "onboarding")

    def create_login_link(self, account_id: str) -> str:
        account = self._get("acct", account_id)
        if not account["details_submitted"]:
            raise PaymentError(
                "Cannot create a login link for an account that has not completed onboarding.",
                transient=False,
                code="account_onboarding_incomplete",
            )
        return self._link(account_id, "login")

    def retrieve_account(self, account_id: str) -> AccountSnapshot:
        return account_snapshot(self._get("acct", account_id))

    def create_transfer(self, request: TransferRequest) -> TransferSnapshot:
        fingerprint = json.dumps(
            [request.amount_cents, request.currency, request.destination, request.transfer_group, request.metadata],
            sort_keys=True,
        )
        transfer = self._idempotent(
            request.idempotency_key, fingerprint, lock=request.destination, action=lambda: self._new_transfer(request)
        )
        return transfer_snapshot(transfer)

    def retrieve_transfer(self, transfer_id: str) -> TransferSnapshot:
        return transfer_snapshot(self._get("tr", transfer_id))

    # What happens on the test-mode pages.

    def open_link(self, account_id: str, token: str) -> str | None:
        """Use a link once: its kind (``onboarding`` or ``login``), or None if it is unknown, used or
        expired (Stripe then sends the seller to the refresh URL)."""
        raw = cast(str | None, self.redis.getdel(self._key("link", token)))
        if not raw:
            return None
        link = json.loads(raw)
        return str(link["kind"]) if link["account"] == account_id else None

    def page_session(self, account_id: str, kind: str) -> str:
        """A token the page's buttons carry, valid for an hour: the link itself was single-use."""
        token = secrets.token_urlsafe(24)
        self.redis.set(
            self._key("page", token), json.dumps({"account": account_id, "kind": kind}), ex=PAGE_SESSION_TTL_SECONDS
        )
        return token

    def page_kind(self, account_id: str, token: str) -> str | None:
        raw = cast(str | None, self.redis.get(self._key("page", token))) if token else None
        if not raw:
            return None
        page = json.loads(raw)
        return str(page["kind"]) if page["account"] == account_id else None

    def account(self, account_id: str) -> dict[str, Any]:
        """The account as Stripe would return it, plus the URLs of its last Account Link."""
        account = self._get("acct", account_id)
        return {
            **_public(account),
            "refresh_url": account.get("_refresh_url"),
            "return_url": account.get("_return_url"),
            "fail_next_transfer": bool(account.get("_fail_next_transfer")),
        }

    def complete_onboarding(self, account_id: str) -> dict[str, Any]:
        return self._update_account(account_id, enabled=True, due=[], disabled_reason=None)

    def leave_requirements_due(self, account_id: str) -> dict[str, Any]:
        return self._update_account(
            account_id, enabled=False, due=list(REQUIREMENTS_LEFT_DUE), disabled_reason="requirements.past_due"
        )

    def fail_next_transfer(self, account_id: str, fail: bool = True) -> None:
        with self._lock(account_id):
            account = self._get("acct", account_id)
            account["_fail_next_transfer"] = fail
            self._save("acct", account)

    def transfers(self, account_id: str) -> list[dict[str, Any]]:
        ids = cast(list[str], self.redis.lrange(self._key("acct_transfers", account_id), 0, 99))
        return [found for found in (self._load("tr", transfer_id) for transfer_id in ids) if found]

    def reverse_transfer(self, transfer_id: str) -> dict[str, Any]:
        """Reverse what is left of a transfer, as the platform may: ``transfer.reversed``."""
        with self._lock(transfer_id):
            transfer = self._get("tr", transfer_id)
            remaining = transfer["amount"] - transfer["amount_reversed"]
            if remaining <= 0:
                return transfer
            reversal = {
                "id": _new_id("trr_test"),
                "object": "transfer_reversal",
                "amount": remaining,
                "currency": transfer["currency"],
                "transfer": transfer_id,
                "created": int(time.time()),
            }
            transfer["reversals"]["data"].append(reversal)
            transfer["reversals"]["total_count"] += 1
            transfer.update(amount_reversed=transfer["amount"], reversed=True)
            self._save("tr", transfer)
        self._emit_event("transfer.reversed", transfer)
        return transfer

    # Internals.

    def _new_account(self, email: str, country: str, metadata: dict[str, str]) -> dict[str, Any]:
        account = {
            "id": _new_id("acct_test"), "object": "account", "type": "express", "country": country,
            "email": email, "created": int(time.time()), "default_currency": None,
            "details_submitted": False, "charges_enabled": False, "payouts_enabled": False,
            "capabilities": {"transfers": "inactive"},
            "requirements": {"currently_due": list(INITIAL_REQUIREMENTS), "eventually_due": list(INITIAL_REQUIREMENTS),
                             "past_due": [], "disabled_reason": "requirements.past_due"},
            "metadata": dict(metadata),
        }  # fmt: skip
        self._save("acct", account)
        return account

    def _update_account(
        self, account_id: str, *, enabled: bool, due: list[str], disabled_reason: str | None
    ) -> dict[str, Any]:
        with self._lock(account_id):
            account = self._get("acct", account_id)
            account.update(details_submitted=True, charges_enabled=enabled, payouts_enabled=enabled)
            account["capabilities"] = {"transfers": "active" if enabled else "inactive"}
            account["requirements"] = {"currently_due": due, "eventually_due": due, "past_due": due,
                                       "disabled_reason": disabled_reason}  # fmt: skip
            self._save("acct", account)
        self._emit_event("account.updated", _public(account), account=account_id)
        return _public(account)

    def _new_transfer(self, request: TransferRequest) -> dict[str, Any]:
        account = self._load("acct", request.destination)
        if account is None:
            raise PaymentError(
                f"No such destination: '{request.destination}'", transient=False, code="resource_missing"
            )
        if account.get("_fail_next_transfer"):
            account["_fail_next_transfer"] = False
            self._save("acct", account)
            raise PaymentError(
                "You have insufficient available funds in your Stripe account.",
                transient=False,
                code="balance_insufficient",
            )
        if account["capabilities"].get("transfers") != "active":
            raise PaymentError(
                "Your destination account needs to have at least one of the following capabilities enabled: "
                "transfers, crypto_transfers, legacy_payments",
                transient=False,
                code="insufficient_capabilities_for_transfer",
            )
        transfer_id = _new_id("tr_test")
        transfer = {
            "id": transfer_id, "object": "transfer", "amount": request.amount_cents, "amount_reversed": 0,
            "currency": request.currency, "destination": request.destination, "created": int(time.time()),
            "transfer_group": request.transfer_group, "metadata": dict(request.metadata), "reversed": False,
            "reversals": {"object": "list", "data": [], "has_more": False, "total_count": 0},
        }  # fmt: skip
        self._save("tr", transfer)
        self.redis.lpush(self._key("acct_transfers", request.destination), transfer_id)
        self.redis.expire(self._key("acct_transfers", request.destination), BUILTIN_TTL_SECONDS)
        return transfer

    def _link(self, account_id: str, kind: str) -> str:
        token = secrets.token_urlsafe(24)
        self.redis.set(self._key("link", token), json.dumps({"account": account_id, "kind": kind}), ex=LINK_TTL_SECONDS)
        return f"{self.app_url}/dev/connect/{account_id}?link={token}"

    def _get(self, kind: str, ident: str) -> dict[str, Any]:
        found = self._load(kind, ident)
        if found is None:
            name = {"acct": "account", "tr": "transfer"}.get(kind, kind)
            raise PaymentError(f"No such {name}: '{ident}'", transient=False, code="resource_missing")
        return found

    def _emit_event(self, event_type: str, obj: dict[str, Any], *, account: str | None = None) -> None:
        event: dict[str, Any] = {
            "id": _new_id("evt_test"),
            "object": "event",
            "api_version": stripe.api_version,
            "created": int(time.time()),
            "livemode": False,
            "pending_webhooks": 1,
            "type": event_type,
            "request": {"id": None, "idempotency_key": None},
            "data": {"object": obj},
        }
        if account is not None:  # an event of a connected account, for the Connect endpoint
            event["account"] = account
        self.notify(event)


def builtin_connect(settings: Settings, redis: Redis, *, notify: EventSink | None = None) -> BuiltinConnect:
    return BuiltinConnect(
        redis,
        namespace=f"chatlink:{settings.celery_queue}:stripe",
        app_url=settings.app_url,
        notify=notify or _deliver_to_own_webhook,
    )


def _deliver_to_own_webhook(event: dict[str, Any]) -> None:
    # Imported here: the task module imports this one.
    from app.queue import enqueue_now
    from tasks import builtin_connect as builtin_connect_tasks

    enqueue_now(builtin_connect_tasks.deliver_builtin_connect_event, event)
