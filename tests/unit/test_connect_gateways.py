"""The Connect gateways: the real Stripe adapter against a local fake Stripe (exact parameters and
idempotency keys), and the built-in twin against real Redis."""

from __future__ import annotations

import pytest

from app.integrations.builtin_connect import BuiltinConnect, builtin_connect
from app.integrations.connect import PaymentError, StripeConnect, TransferRequest, connect_gateway
from tests.fakes.stripe_api import FakeStripe

METADATA = {"app": "chatlink", "env": "test", "seller_id": "seller-1"}


@pytest.fixture
def fake_stripe():  # type: ignore[no-untyped-def]
    with FakeStripe() as fake:
        yield fake


def stripe_connect(fake: FakeStripe, retries: int = 0) -> StripeConnect:
    return StripeConnect("sk_test_fake", api_base=fake.url, timeout=5, max_network_retries=retries)


def transfer_request(**changes: object) -> TransferRequest:
    values: dict[str, object] = {
        "amount_cents": 2000,
        "currency": "usd",
        "destination": "acct_fake_1",
        "transfer_group": "payout:p-1",
        "idempotency_key": "transfer:p-1",
        "metadata": {"app": "chatlink", "env": "test", "payout_id": "p-1", "seller_id": "seller-1"},
    }
    values.update(changes)
    return TransferRequest(**values)  # type: ignore[arg-type]


class TestStripeConnect:
    def test_accounts_create_sends_exactly_an_express_account_with_transfers(self, fake_stripe):
        account_id = stripe_connect(fake_stripe).create_account(
            email="ada@example.com", country="US", recipient=False, metadata=METADATA, idempotency_key="account:s-1"
        )

        assert account_id == "acct_fake_1"
        (sent,) = fake_stripe.requests
        assert (sent.method, sent.path, sent.idempotency_key) == ("POST", "/v1/accounts", "account:s-1")
        assert sent.params == {
            "type": "express",
            "country": "US",
            "email": "ada@example.com",
            "capabilities[transfers][requested]": "true",
            "metadata[app]": "chatlink",
            "metadata[env]": "test",
            "metadata[seller_id]": "seller-1",
        }

    def test_a_cross_border_account_asks_for_the_recipient_agreement(self, fake_stripe):
        stripe_connect(fake_stripe).create_account(
            email="ada@example.com", country="GB", recipient=True, metadata=METADATA, idempotency_key="account:s-2"
        )
        assert fake_stripe.requests[0].params["tos_acceptance[service_agreement]"] == "recipient"

    def test_the_same_key_gives_the_same_account(self, fake_stripe):
        gateway = stripe_connect(fake_stripe)
        first = gateway.create_account(
            email="ada@example.com", country="US", recipient=False, metadata=METADATA, idempotency_key="account:s-1"
        )
        again = gateway.create_account(
            email="ada@example.com", country="US", recipient=False, metadata=METADATA, idempotency_key="account:s-1"
        )
        assert first == again and len(fake_stripe.accounts) == 1

    def test_account_links_create_sends_the_onboarding_urls(self, fake_stripe):
        gateway = stripe_connect(fake_stripe)
        account_id = gateway.create_account(
            email="a@example.com", country="US", recipient=False, metadata=METADATA, idempotency_key="account:s-1"
        )
        url = gateway.create_account_link(
            account_id, refresh_url="http://app/payouts/setup/refresh", return_url="http://app/payouts/setup?x=1"
        )

        assert url.startswith("https://connect.stripe.test/setup/e/acct_fake_1/")
        sent = fake_stripe.requests[-1]
        assert (sent.method, sent.path) == ("POST", "/v1/account_links")
        assert sent.params == {
            "account": "acct_fake_1",
            "refresh_url": "http://app/payouts/setup/refresh",
            "return_url": "http://app/payouts/setup?x=1",
            "type": "account_onboarding",
        }

    def test_login_links_are_made_for_the_account(self, fake_stripe):
        gateway = stripe_connect(fake_stripe)
        account_id = gateway.create_account(
            email="a@example.com", country="US", recipient=False, metadata=METADATA, idempotency_key="account:s-1"
        )
        url = gateway.create_login_link(account_id)

        assert url.startswith("https://connect.stripe.test/express/acct_fake_1/")
        sent = fake_stripe.requests[-1]
        assert (sent.method, sent.path, sent.params) == ("POST", "/v1/accounts/acct_fake_1/login_links", {})

    def test_retrieve_account_reads_the_state_and_what_is_due(self, fake_stripe):
        gateway = stripe_connect(fake_stripe)
        account_id = gateway.create_account(
            email="a@example.com", country="US", recipient=False, metadata=METADATA, idempotency_key="account:s-1"
        )
        fake_stripe.set_account(account_id, enabled=False, due=["individual.verification.document"])

        snapshot = gateway.retrieve_account(account_id)

        assert snapshot.details_submitted and not snapshot.payouts_enabled
        assert snapshot.requirements_due == ["individual.verification.document"]
        assert snapshot.disabled_reason == "requirements.past_due"
        assert snapshot.metadata == METADATA

    def test_transfers_create_sends_amount_currency_destination_group_metadata_and_key(self, fake_stripe):
        gateway = stripe_connect(fake_stripe)
        gateway.create_account(
            email="a@example.com", country="US", recipient=False, metadata=METADATA, idempotency_key="account:s-1"
        )
        fake_stripe.set_account("acct_fake_1", enabled=True)

        transfer = gateway.create_transfer(transfer_request())

        assert transfer.transfer_id == "tr_fake_1" and transfer.amount_cents == 2000
        sent = fake_stripe.requests[-1]
        assert (sent.method, sent.path, sent.idempotency_key) == ("POST", "/v1/transfers", "transfer:p-1")
        assert sent.params == {
            "amount": "2000",
            "currency": "usd",
            "destination": "acct_fake_1",
            "transfer_group": "payout:p-1",
            "metadata[app]": "chatlink",
            "metadata[env]": "test",
            "metadata[payout_id]": "p-1",
            "metadata[seller_id]": "seller-1",
        }

    def test_a_refused_transfer_is_permanent_and_a_5xx_is_transient(self, fake_stripe):
        gateway = stripe_connect(fake_stripe)
        with pytest.raises(PaymentError) as refused:
            gateway.create_transfer(transfer_request())  # no such destination
        assert not refused.value.transient

        fake_stripe.fail_next(500)
        with pytest.raises(PaymentError) as outage:
            gateway.create_transfer(transfer_request())
        assert outage.value.transient

    def test_retrieve_transfer_reports_a_reversal(self, fake_stripe):
        gateway = stripe_connect(fake_stripe)
        gateway.create_account(
            email="a@example.com", country="US", recipient=False, metadata=METADATA, idempotency_key="account:s-1"
        )
        fake_stripe.set_account("acct_fake_1", enabled=True)
        created = gateway.create_transfer(transfer_request())
        fake_stripe.reverse_transfer(created.transfer_id)

        snapshot = gateway.retrieve_transfer(created.transfer_id)

        assert snapshot.reversed and snapshot.amount_reversed_cents == 2000
        assert snapshot.metadata["payout_id"] == "p-1"


class TestBuiltinConnect:
    @pytest.fixture
    def events(self) -> list[dict]:  # type: ignore[type-arg]
        return []

    @pytest.fixture
    def twin(self, settings, redis, events) -> BuiltinConnect:  # type: ignore[no-untyped-def]
        return builtin_connect(settings, redis, notify=events.append)

    def _account(self, twin: BuiltinConnect, key: str = "account:s-1") -> str:
        return twin.create_account(
            email="ada@example.com", country="US", recipient=False, metadata=METADATA, idempotency_key=key
        )

    def test_it_is_chosen_without_a_stripe_key(self, settings, redis):
        assert isinstance(connect_gateway(settings, redis), BuiltinConnect)
        assert isinstance(connect_gateway(settings.replace(stripe_secret_key="sk_test_x"), redis), StripeConnect)

    def test_one_account_per_key_and_a_single_use_onboarding_link(self, twin):
        account_id = self._account(twin)
        assert self._account(twin) == account_id

        url = twin.create_account_link(account_id, refresh_url="http://app/r", return_url="http://app/ret")
        assert url.startswith(f"{twin.app_url}/dev/connect/{account_id}?link=")
        token = url.split("link=", 1)[1]

        assert twin.open_link(account_id, token) == "onboarding"
        assert twin.open_link(account_id, token) is None  # used
        assert twin.account(account_id)["refresh_url"] == "http://app/r"

    def test_completing_onboarding_enables_payouts_and_announces_it_for_the_connect_endpoint(self, twin, events):
        account_id = self._account(twin)
        twin.complete_onboarding(account_id)

        snapshot = twin.retrieve_account(account_id)
        assert snapshot.payouts_enabled and snapshot.requirements_due == []
        (event,) = events
        assert event["type"] == "account.updated" and event["account"] == account_id
        assert event["data"]["object"]["payouts_enabled"] is True

    def test_leaving_requirements_due_keeps_payouts_off(self, twin, events):
        account_id = self._account(twin)
        twin.leave_requirements_due(account_id)

        snapshot = twin.retrieve_account(account_id)
        assert snapshot.details_submitted and not snapshot.payouts_enabled
        assert "individual.verification.document" in snapshot.requirements_due

    def test_transfers_are_recorded_idempotently_and_can_be_made_to_fail(self, twin):
        account_id = self._account(twin)
        with pytest.raises(PaymentError, match="capabilities"):
            twin.create_transfer(transfer_request(destination=account_id, idempotency_key="transfer:early"))
        twin.complete_onboarding(account_id)

        first = twin.create_transfer(transfer_request(destination=account_id))
        again = twin.create_transfer(transfer_request(destination=account_id))
        assert first == again and [t["id"] for t in twin.transfers(account_id)] == [first.transfer_id]

        twin.fail_next_transfer(account_id)
        with pytest.raises(PaymentError) as failed:
            twin.create_transfer(transfer_request(destination=account_id, idempotency_key="transfer:p-2"))
        assert failed.value.code == "balance_insufficient" and not failed.value.transient
        # Only the next one fails.
        assert twin.create_transfer(transfer_request(destination=account_id, idempotency_key="transfer:p-3"))

    def test_a_reversal_is_announced_as_a_platform_event(self, twin, events):
        account_id = self._account(twin)
        twin.complete_onboarding(account_id)
        created = twin.create_transfer(transfer_request(destination=account_id))
        events.clear()

        twin.reverse_transfer(created.transfer_id)

        assert twin.retrieve_transfer(created.transfer_id).amount_reversed_cents == 2000
        (event,) = events
        assert event["type"] == "transfer.reversed" and "account" not in event
