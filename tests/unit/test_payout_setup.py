"""The seller's payout set-up: the manual method (IBAN checksum, encryption, last four only, the
email), Connect onboarding (one account per seller), the account's state and the weekly payouts."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from app.db import utcnow
from app.integrations.builtin_connect import BuiltinConnect, builtin_connect
from app.models import AutomaticPayout, ConnectAccount, EventLog, PayoutSchedule, PayoutSettings, PayoutStatus
from app.refusals import Conflict, Invalid
from app.services import automatic_payouts, connect, payout_methods, payouts
from tests.connect_support import available, connected_seller, emails, fund
from tests.factories import UserFactory

SECRET = "test-secret-key-that-is-long-enough-0123456789"
IBAN = "DE89 3704 0044 0532 0130 00"  # the standard example; its check digits are right


@pytest.fixture
def twin(settings, redis) -> BuiltinConnect:  # type: ignore[no-untyped-def]
    return builtin_connect(settings, redis, notify=lambda event: None)


def set_iban(session, seller, iban: str = IBAN, holder: str = "Ada Lovelace"):  # type: ignore[no-untyped-def]
    body = {"kind": "iban", "holder": holder, "iban": iban}
    return payout_methods.set_method(session, seller.id, body, secret_key=SECRET, now=utcnow())


class TestIban:
    @pytest.mark.parametrize(
        "iban", ["DE89370400440532013000", "GB82 WEST 1234 5698 7654 32", "fr14 2004 1010 0505 0001 3m02 606"]
    )
    def test_valid_ibans_pass(self, iban):
        assert payout_methods.iban_checksum_ok(payout_methods.normalise_iban(iban))

    @pytest.mark.parametrize("iban", ["DE89370400440532013001", "GB82WEST12345698765433", "DE00370400440532013000"])
    def test_a_wrong_digit_fails_the_checksum(self, iban):
        with pytest.raises(Invalid) as refused:
            payout_methods.normalise_iban(iban)
        assert refused.value.fields == {"iban": "This IBAN's check digits do not match: check it for a typo."}

    @pytest.mark.parametrize("iban", ["", "12345", "DE89 3704", None, 42])
    def test_anything_not_shaped_like_an_iban_is_refused(self, iban):
        with pytest.raises(Invalid):
            payout_methods.normalise_iban(iban)


class TestManualMethod:
    def test_only_the_last_four_are_stored_in_clear_and_the_seller_is_emailed(self, db_session):
        seller = UserFactory()

        view = set_iban(db_session, seller)

        assert view.as_json() == {"kind": "iban", "holder": "Ada Lovelace", "last4": "3000"}
        row = db_session.scalars(select(PayoutSettings).where(PayoutSettings.seller_id == seller.id)).one()
        raw = db_session.execute(
            text("SELECT method_ciphertext::text FROM payout_settings WHERE id = :id"), {"id": row.id}
        ).scalar_one()
        assert "DE89370400440532013000" not in raw and "0532013000" not in raw
        assert payout_methods.full_method(row, SECRET) == "DE89370400440532013000"
        assert payout_methods.full_method(row, "another-secret-key-entirely-0123456789") is None
        (email,) = emails(db_session, "payout_method_changed", seller.email)
        assert email.context["method"] == "Bank account (IBAN) ending in 3000"
        assert "DE89" not in str(email.context)
        assert db_session.scalars(select(EventLog).where(EventLog.type == "payout.method_changed")).one()

    def test_paypal_needs_a_real_email_and_changing_again_emails_again(self, db_session):
        seller = UserFactory()
        with pytest.raises(Invalid):
            payout_methods.set_method(
                db_session, seller.id, {"kind": "paypal", "email": "nope"}, secret_key=SECRET, now=utcnow()
            )
        set_iban(db_session, seller)
        view = payout_methods.set_method(
            db_session, seller.id, {"kind": "paypal", "email": "Ada@Example.com"}, secret_key=SECRET, now=utcnow()
        )
        assert view.as_json() == {"kind": "paypal", "holder": None, "last4": ".com"}
        assert len(emails(db_session, "payout_method_changed", seller.email)) == 2

    def test_an_admin_sees_the_full_value_only_on_a_waiting_payout(self, db_session):
        seller = UserFactory()
        fund(db_session, seller, 5000)
        set_iban(db_session, seller)
        waiting = payouts.request_payout(db_session, seller.id, 1500, currency="usd", now=utcnow())
        done = payouts.request_payout(db_session, seller.id, 1500, currency="usd", now=utcnow())
        done.status = PayoutStatus.PROCESSED

        found = payout_methods.admin_destinations(db_session, [waiting, done], secret_key=SECRET)

        assert found[waiting.id].full_value == "DE89370400440532013000"
        assert found[done.id].full_value is None and found[done.id].method.last4 == "3000"


class TestOnboarding:
    def start(self, session, seller, twin, country=None):  # type: ignore[no-untyped-def]
        return connect.start_onboarding(
            session,
            seller.id,
            gateway=twin,
            country=country,
            connect_countries=("US", "GB"),
            app_url="http://app.test",
            app_env="test",
            now=utcnow(),
        )

    def test_one_account_per_seller_and_a_new_link_each_time(self, db_session, twin):
        seller = UserFactory()
        first = self.start(db_session, seller, twin)
        again = self.start(db_session, seller, twin)

        account = db_session.scalars(select(ConnectAccount).where(ConnectAccount.seller_id == seller.id)).one()
        assert first != again
        assert first.startswith(f"{twin.app_url}/dev/connect/{account.stripe_account_id}?link=")
        assert twin.account(account.stripe_account_id)["metadata"] == {
            "app": "chatlink",
            "env": "test",
            "seller_id": str(seller.id),
        }
        assert twin.account(account.stripe_account_id)["return_url"] == "http://app.test/payouts/setup?connect=return"

    def test_an_unsupported_country_is_refused_with_the_manual_fallback_named(self, db_session, twin):
        with pytest.raises(Invalid) as refused:
            self.start(db_session, UserFactory(), twin, country="BR")
        assert "bank account or PayPal" in refused.value.message

    def test_connect_off_refuses(self, db_session, twin):
        with pytest.raises(Conflict):
            connect.start_onboarding(
                db_session,
                UserFactory().id,
                gateway=twin,
                country=None,
                connect_countries=(),
                app_url="http://app.test",
                app_env="test",
                now=utcnow(),
            )

    def test_the_account_view_follows_the_state(self, db_session, twin):
        seller = UserFactory()
        assert connect.payout_account(db_session, seller.id, connect_countries=("US",)).as_json()["mode"] == "none"
        _, account = connected_seller(db_session, twin, enabled=False, seller=seller)
        connect.sync_account(db_session, account, twin.retrieve_account(account.stripe_account_id), now=utcnow())

        view = connect.payout_account(db_session, seller.id, connect_countries=("US",)).as_json()
        assert (view["mode"], view["payoutsEnabled"], view["schedule"]) == ("connect", False, "manual")
        assert view["requirementsDue"]

        set_iban(db_session, seller)
        view = connect.payout_account(db_session, seller.id, connect_countries=("US",)).as_json()
        assert (view["mode"], view["payoutsEnabled"]) == ("manual", True)

        twin.complete_onboarding(account.stripe_account_id)
        connect.sync_account(db_session, account, twin.retrieve_account(account.stripe_account_id), now=utcnow())
        view = connect.payout_account(db_session, seller.id, connect_countries=("US",)).as_json()
        assert (view["mode"], view["payoutsEnabled"], view["requirementsDue"]) == ("connect", True, [])


class TestAutomaticPayouts:
    def weekly(self, session, seller) -> None:  # type: ignore[no-untyped-def]
        connect.set_schedule(session, seller.id, "weekly", now=utcnow())

    def run(self, session, seller, period="2026-W49"):  # type: ignore[no-untyped-def]
        return automatic_payouts.run_automatic_payout(
            session, seller.id, period=period, default_currency="usd", now=utcnow()
        )

    def test_the_whole_balance_once_a_week(self, db_session, twin):
        seller, _ = connected_seller(db_session, twin, balance=4200)
        self.weekly(db_session, seller)
        assert automatic_payouts.due_sellers(db_session, "2026-W49") == [seller.id]

        payout = self.run(db_session, seller)

        assert payout is not None and payout.amount_cents == 4200 and available(db_session, seller) == 0
        assert self.run(db_session, seller) is None
        assert automatic_payouts.due_sellers(db_session, "2026-W49") == []
        fund(db_session, seller, 1500)
        assert self.run(db_session, seller, "2026-W50").amount_cents == 1500
        assert len(db_session.scalars(select(AutomaticPayout)).all()) == 2

    def test_nothing_below_the_minimum_without_a_destination_or_on_manual(self, db_session, twin):
        poor, _ = connected_seller(db_session, twin, balance=payouts.MIN_PAYOUT_CENTS - 1)
        self.weekly(db_session, poor)
        nowhere = UserFactory()
        fund(db_session, nowhere, 5000)
        self.weekly(db_session, nowhere)
        manual, _ = connected_seller(db_session, twin, balance=5000)

        assert [self.run(db_session, s) for s in (poor, nowhere, manual)] == [None, None, None]
        assert connect.set_schedule(db_session, manual.id, "manual", now=utcnow()) == PayoutSchedule.MANUAL
        with pytest.raises(Invalid):
            connect.set_schedule(db_session, manual.id, "daily", now=utcnow())

    def test_iso_period(self):
        from datetime import datetime

        assert automatic_payouts.iso_period(datetime(2026, 12, 7)) == "2026-W50"
        assert automatic_payouts.iso_period(datetime(2027, 1, 1)) == "2026-W53"


class TestPrivacy:
    def test_the_export_has_the_last_four_and_deletion_removes_the_method(self, db_session):
        from app.services import privacy
        from tests.factories import PASSWORD

        seller = UserFactory()
        set_iban(db_session, seller)

        exported = privacy.export_seller_data(db_session, seller.id, now=utcnow())
        (row,) = exported["payoutSettings"]
        assert row["methodLast4"] == "3000" and "methodCiphertext" not in row
        assert "DE89370400440532013000" not in str(exported)

        privacy.delete_account(db_session, seller.id, password=PASSWORD, now=utcnow())
        assert db_session.scalars(select(PayoutSettings).where(PayoutSettings.seller_id == seller.id)).all() == []
