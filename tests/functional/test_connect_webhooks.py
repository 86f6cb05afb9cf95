"""Connect events through the real webhook: signed with the Connect endpoint's secret or the
platform's, stored in the inbox, processed by the task that re-fetches from the gateway (the
built-in twin here). account.updated (enabled, restricted, requirements due), transfer.reversed,
duplicates and any order."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from app.db import utcnow
from app.integrations.builtin_connect import BuiltinConnect, builtin_connect
from app.integrations.payments import sign_payload
from app.models import ConnectAccount, LedgerEntry, LedgerKind, PayoutStatus, StripeEvent, StripeEventStatus
from app.services import payouts, transfers
from tasks.stripe_events import process_stripe_event
from tests.connect_support import available, connected_seller, emails


@pytest.fixture
def twin(settings, redis) -> BuiltinConnect:  # type: ignore[no-untyped-def]
    return builtin_connect(settings, redis, notify=lambda event: None)


def event(event_type: str, obj: dict[str, Any], *, account: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"evt_connect_{uuid.uuid4().hex[:12]}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": obj},
    }
    if account:
        body["account"] = account
    return body


def deliver(client, db_session, body: dict[str, Any], secret: str) -> StripeEventStatus | None:  # type: ignore[no-untyped-def]
    """Post the event as Stripe does and run the task the webhook queued; the inbox row's status."""
    payload = json.dumps(body, indent=2).encode()
    response = client.post(
        "/api/webhooks/stripe",
        data=payload,
        headers={"Content-Type": "application/json", "Stripe-Signature": sign_payload(payload, secret)},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    row = db_session.scalars(select(StripeEvent).where(StripeEvent.stripe_event_id == body["id"])).one()
    # In this app's context: a Celery app built by another test may be the thread's current one.
    with client.application.app_context():
        process_stripe_event(str(row.id))
    db_session.refresh(row)
    return row.status


def account_updated(twin: BuiltinConnect, account_id: str) -> dict[str, Any]:
    obj = {key: value for key, value in twin.account(account_id).items() if not key.endswith("_url")}
    return event("account.updated", obj, account=account_id)


@pytest.fixture
def secrets(settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"connect": settings.stripe_connect_webhook_secret, "platform": settings.stripe_webhook_secret}


class TestAccountUpdated:
    def test_enabled(self, client, db_session, twin, secrets):
        _, account = connected_seller(db_session, twin, enabled=False)
        twin.complete_onboarding(account.stripe_account_id)

        status = deliver(client, db_session, account_updated(twin, account.stripe_account_id), secrets["connect"])

        db_session.refresh(account)
        assert status == StripeEventStatus.PROCESSED
        assert (account.details_submitted, account.payouts_enabled, account.requirements_due) == (True, True, [])

    def test_restricted_with_requirements_due(self, client, db_session, twin, secrets):
        _, account = connected_seller(db_session, twin, enabled=False)
        twin.leave_requirements_due(account.stripe_account_id)

        deliver(client, db_session, account_updated(twin, account.stripe_account_id), secrets["connect"])

        db_session.refresh(account)
        assert account.details_submitted and not account.payouts_enabled
        assert account.requirements_due == ["individual.verification.document", "external_account"]
        assert account.disabled_reason == "requirements.past_due"

    def test_the_platform_secret_is_accepted_too_and_an_unknown_one_is_not(self, client, db_session, twin, secrets):
        _, account = connected_seller(db_session, twin, enabled=False)
        twin.complete_onboarding(account.stripe_account_id)
        body = account_updated(twin, account.stripe_account_id)

        payload = json.dumps(body).encode()
        refused = client.post(
            "/api/webhooks/stripe",
            data=payload,
            headers={"Stripe-Signature": sign_payload(payload, "whsec_somebody_else")},
        )
        assert refused.status_code == 400

        assert deliver(client, db_session, body, secrets["platform"]) == StripeEventStatus.PROCESSED
        db_session.refresh(account)
        assert account.payouts_enabled

    def test_duplicates_change_nothing(self, client, db_session, twin, secrets):
        _, account = connected_seller(db_session, twin, enabled=False)
        twin.complete_onboarding(account.stripe_account_id)
        body = account_updated(twin, account.stripe_account_id)

        deliver(client, db_session, body, secrets["connect"])
        deliver(client, db_session, body, secrets["connect"])
        # The same state announced again under another event id: processed, nothing to change.
        again = account_updated(twin, account.stripe_account_id)
        deliver(client, db_session, again, secrets["connect"])

        assert len(db_session.scalars(select(StripeEvent).where(StripeEvent.stripe_event_id == body["id"])).all()) == 1
        row = db_session.scalars(select(StripeEvent).where(StripeEvent.stripe_event_id == again["id"])).one()
        assert row.error == "already in sync"

    def test_any_order_ends_in_what_stripe_says_now(self, client, db_session, twin, secrets):
        _, account = connected_seller(db_session, twin, enabled=False)
        twin.leave_requirements_due(account.stripe_account_id)
        older = account_updated(twin, account.stripe_account_id)
        twin.complete_onboarding(account.stripe_account_id)
        newer = account_updated(twin, account.stripe_account_id)

        deliver(client, db_session, newer, secrets["connect"])
        deliver(client, db_session, older, secrets["connect"])  # late: its body says restricted

        db_session.refresh(account)
        assert account.payouts_enabled and account.requirements_due == []

    def test_an_account_that_is_not_ours_is_ignored(self, client, db_session, twin, secrets):
        status = deliver(
            client,
            db_session,
            event("account.updated", {"id": "acct_somebody"}, account="acct_somebody"),
            secrets["connect"],
        )
        assert status == StripeEventStatus.IGNORED
        assert db_session.scalars(select(ConnectAccount)).all() == []


class TestTransferReversed:
    def test_the_amount_returns_once_and_the_seller_is_told(self, client, db_session, twin, secrets):
        seller, account = connected_seller(db_session, twin, balance=3000)
        payout = payouts.request_payout(db_session, seller.id, 2500, currency="usd", now=utcnow())
        transfers.send_transfer(db_session, payout.id, gateway=twin, app_env="test", now=utcnow())
        (sent,) = twin.transfers(account.stripe_account_id)
        reversed_transfer = twin.reverse_transfer(sent["id"])
        body = event("transfer.reversed", reversed_transfer)

        assert deliver(client, db_session, body, secrets["platform"]) == StripeEventStatus.PROCESSED
        assert deliver(client, db_session, body, secrets["platform"]) == StripeEventStatus.PROCESSED
        again = event("transfer.reversed", reversed_transfer)
        deliver(client, db_session, again, secrets["platform"])

        db_session.refresh(payout)
        assert payout.status == PayoutStatus.REVERSED
        reversals = db_session.scalars(
            select(LedgerEntry).where(
                LedgerEntry.payout_request_id == payout.id, LedgerEntry.kind == LedgerKind.REVERSAL
            )
        ).all()
        assert [row.amount_cents for row in reversals] == [2500]
        assert available(db_session, seller) == 3000
        assert len(emails(db_session, "payout_reversed", seller.email)) == 1

    def test_a_transfer_of_somebody_else_is_ignored(self, client, db_session, twin, secrets):
        body = event("transfer.reversed", {"id": "tr_other", "metadata": {"app": "other"}, "amount_reversed": 5})
        assert deliver(client, db_session, body, secrets["platform"]) == StripeEventStatus.IGNORED


class TestBuiltinDelivery:
    def test_connect_events_are_signed_with_the_connect_secret_and_others_with_the_platform_secret(
        self, app, monkeypatch, secrets
    ):
        from tasks import builtin_connect as builtin_connect_tasks

        signed: list[tuple[str, str]] = []
        monkeypatch.setattr(
            builtin_connect_tasks,
            "post_signed_event",
            lambda url, body, secret: signed.append((body["type"], secret)) or 200,
        )
        with app.app_context():
            builtin_connect_tasks.deliver_builtin_connect_event(
                event("account.updated", {"id": "acct_1"}, account="acct_1")
            )
            builtin_connect_tasks.deliver_builtin_connect_event(event("transfer.reversed", {"id": "tr_1"}))

        assert signed == [("account.updated", secrets["connect"]), ("transfer.reversed", secrets["platform"])]
