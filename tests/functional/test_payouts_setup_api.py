"""The payout set-up through the Flask client: the JSON API of DESIGN.md's Interfaces, the seller's
page, the built-in /dev/connect onboarding, and the admin's transfers and payout queue."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.db import utcnow
from app.integrations.builtin_connect import builtin_connect
from app.models import ConnectAccount, EventLog, TransferState
from app.services import payouts, transfers
from tests.conftest import csrf_token, login
from tests.connect_support import connected_seller, fund
from tests.factories import AdminFactory, ProfileFactory

IBAN = "DE89370400440532013000"
DELIVER = "tasks.builtin_connect.deliver_builtin_connect_event"


@pytest.fixture
def seller(db_session):  # type: ignore[no-untyped-def]
    return ProfileFactory().user


@pytest.fixture
def twin(settings, redis):  # type: ignore[no-untyped-def]
    return builtin_connect(settings, redis, notify=lambda event: None)


@pytest.fixture
def api(client, seller):  # type: ignore[no-untyped-def]
    login(client, seller)
    token = csrf_token(client)

    def send(path: str, body: object = None):  # type: ignore[no-untyped-def]
        if body is None:
            return client.post(path, headers={"X-CSRFToken": token})
        return client.post(path, json=body, headers={"X-CSRFToken": token})

    send.token = token  # type: ignore[attr-defined]
    return send


class TestApi:
    def test_every_route_needs_a_login(self, client):
        assert client.get("/api/payouts/account").status_code == 401
        assert client.post("/api/payouts/onboarding", headers={"X-CSRFToken": csrf_token(client)}).status_code == 401

    def test_a_new_seller_has_nowhere_to_be_paid_yet(self, client, api):
        body = client.get("/api/payouts/account").get_json()
        assert {k: body[k] for k in ("mode", "payoutsEnabled", "requirementsDue", "schedule")} == {
            "mode": "none",
            "payoutsEnabled": False,
            "requirementsDue": [],
            "schedule": "manual",
        }

    def test_onboarding_gives_a_link_to_the_builtin_page_for_one_account(self, client, api, db_session, seller):
        first = api("/api/payouts/onboarding")
        again = api("/api/payouts/onboarding", {"country": "US"})

        assert first.status_code == again.status_code == 200
        account = db_session.scalars(select(ConnectAccount).where(ConnectAccount.seller_id == seller.id)).one()
        pattern = rf"http://127\.0\.0\.1:5000/dev/connect/{account.stripe_account_id}\?link=\S+"
        assert re.fullmatch(pattern, first.get_json()["url"])
        assert first.get_json()["url"] != again.get_json()["url"]
        body = client.get("/api/payouts/account").get_json()
        assert (body["mode"], body["payoutsEnabled"]) == ("connect", False)

    def test_an_unsupported_country_is_a_422_naming_the_field(self, api):
        response = api("/api/payouts/onboarding", {"country": "BR"})
        assert response.status_code == 422
        error = response.get_json()["error"]
        assert error["code"] == "country_not_supported" and "country" in error["fields"]

    def test_a_bad_iban_is_a_422_and_a_good_one_shows_only_its_last_four(self, client, api):
        bad = api("/api/payouts/method", {"kind": "iban", "holder": "Ada", "iban": "DE89370400440532013001"})
        assert bad.status_code == 422 and "iban" in bad.get_json()["error"]["fields"]

        good = api("/api/payouts/method", {"kind": "iban", "holder": "Ada Lovelace", "iban": IBAN})
        assert good.status_code == 200
        body = good.get_json()
        assert (body["mode"], body["payoutsEnabled"]) == ("manual", True)
        assert body["method"] == {"kind": "iban", "holder": "Ada Lovelace", "last4": "3000"}
        for page in (good, client.get("/api/payouts/account"), client.get("/payouts/setup"), client.get("/balance")):
            assert IBAN not in page.get_data(as_text=True) and "0532013000" not in page.get_data(as_text=True)

    def test_paypal_and_the_schedule(self, api):
        assert api("/api/payouts/method", {"kind": "paypal", "email": "ada@example.com"}).get_json()["method"] == {
            "kind": "paypal",
            "holder": None,
            "last4": ".com",
        }
        assert api("/api/payouts/method", {"kind": "cheque"}).status_code == 422
        assert api("/api/payouts/schedule", {"schedule": "weekly"}).get_json()["schedule"] == "weekly"
        assert api("/api/payouts/schedule", {"schedule": "hourly"}).status_code == 422

    def test_the_dashboard_link_needs_onboarding_first(self, api):
        assert api("/api/payouts/dashboard").status_code == 409


class TestBuiltinOnboarding:
    def test_complete_onboarding_sends_the_seller_back_and_announces_the_account(self, client, api, enqueued):
        url = api("/api/payouts/onboarding").get_json()["url"]
        path = url.removeprefix("http://127.0.0.1:5000")

        page = client.get(path)
        assert page.status_code == 200 and "Complete onboarding" in page.get_data(as_text=True)
        # Single-use: the same link again goes to the refresh URL.
        used = client.get(path)
        assert used.status_code == 303 and used.headers["Location"].endswith("/payouts/setup/refresh")

        account_id = path.split("/")[3].split("?")[0]
        token = re.search(r'name="page" value="([^"]+)"', page.get_data(as_text=True)).group(1)
        refused = client.post(f"/dev/connect/{account_id}/complete", data={"csrf_token": api.token, "page": "nope"})
        assert refused.status_code == 403
        done = client.post(f"/dev/connect/{account_id}/complete", data={"csrf_token": api.token, "page": token})
        assert done.status_code == 303 and done.headers["Location"].endswith("/payouts/setup?connect=return")
        (delivered,) = [args[0] for name, args, _ in enqueued if name == DELIVER]
        assert delivered["type"] == "account.updated" and delivered["account"] == account_id
        assert delivered["data"]["object"]["payouts_enabled"] is True

    def test_the_refresh_url_makes_a_new_link(self, client, api):
        api("/api/payouts/onboarding")
        response = client.get("/payouts/setup/refresh")
        assert response.status_code == 303 and "/dev/connect/acct_test_" in response.headers["Location"]

    def test_there_is_no_builtin_page_with_real_stripe(self, make_app, settings):
        real = make_app(settings.replace(stripe_secret_key="sk_test_x"))
        assert real.test_client().get("/dev/connect/acct_1?link=x").status_code == 404


class TestPages:
    def test_the_setup_page_and_the_balance_show_the_state(self, client, api, db_session, seller, twin):
        page = client.get("/payouts/setup").get_data(as_text=True)
        assert "Not set up" in page and "Set up payouts" in page
        connected_seller(db_session, twin, enabled=False, seller=seller)
        account = db_session.scalars(select(ConnectAccount).where(ConnectAccount.seller_id == seller.id)).one()
        account.requirements_due = ["external_account"]
        db_session.flush()
        balance = client.get("/balance").get_data(as_text=True)
        assert "Set-up not finished" in balance and "external_account" in balance

    def test_saving_a_method_from_the_page(self, client, api):
        response = client.post(
            "/payouts/setup/method",
            data={"csrf_token": api.token, "kind": "iban", "holder": "Ada", "iban": "DE89 3704 0044 0532 0130 00"},
        )
        assert response.status_code == 303
        assert "ending in 3000" in client.get("/payouts/setup").get_data(as_text=True)


class TestAdmin:
    @pytest.fixture
    def admin_client(self, app, db_session):  # type: ignore[no-untyped-def]
        admin = AdminFactory()
        admin_client = app.test_client()
        login(admin_client, admin)
        admin_client.admin = admin  # type: ignore[attr-defined]
        return admin_client

    def test_sellers_cannot_see_transfers(self, client, api):
        assert client.get("/api/admin/transfers").status_code == 403

    def test_transfers_with_state_and_ids_and_a_failure_to_retry(self, admin_client, db_session, twin):
        seller, account = connected_seller(db_session, twin, balance=3000)
        payout = payouts.request_payout(db_session, seller.id, 2500, currency="usd", now=utcnow())
        twin.fail_next_transfer(account.stripe_account_id)
        transfers.send_transfer(db_session, payout.id, gateway=twin, app_env="test", now=utcnow())

        listed = admin_client.get("/api/admin/transfers?state=failed").get_json()["transfers"]
        (row,) = [item for item in listed if item["payoutId"] == str(payout.id)]
        assert (row["state"], row["destination"], row["stripeTransferId"]) == (
            "failed",
            account.stripe_account_id,
            None,
        )
        page = admin_client.get("/admin/transfers?state=failed").get_data(as_text=True)
        assert str(payout.id) in page and "Retry" in page

        token = csrf_token(admin_client)
        retried = admin_client.post(f"/api/admin/transfers/{payout.id}/retry", headers={"X-CSRFToken": token})
        assert retried.status_code == 201
        again = admin_client.post(f"/api/admin/transfers/{payout.id}/retry", headers={"X-CSRFToken": token})
        assert again.status_code == 409
        audit = db_session.scalars(select(EventLog).where(EventLog.type == "admin.transfer_retried")).one()
        assert audit.actor == f"user:{admin_client.admin.id}"
        sending = admin_client.get("/api/admin/transfers?state=sending").get_json()["transfers"]
        assert [item["payoutId"] for item in sending] == [retried.get_json()["payout"]["id"]]
        assert TransferState.SENDING.value == sending[0]["state"]

    def test_the_queue_shows_the_full_method_on_a_waiting_payout_only(self, admin_client, db_session, seller):
        from app.services import payout_methods

        payout_methods.set_method(
            db_session,
            seller.id,
            {"kind": "iban", "holder": "Ada Lovelace", "iban": IBAN},
            secret_key=admin_client.application.extensions["settings"].secret_key,
            now=utcnow(),
        )
        fund(db_session, seller, 3000)
        payout = payouts.request_payout(db_session, seller.id, 2500, currency="usd", now=utcnow())

        page = admin_client.get("/admin/payouts").get_data(as_text=True)
        assert IBAN in page and "Ada Lovelace" in page
        (queued,) = [
            p for p in admin_client.get("/api/admin/payouts").get_json()["payouts"] if p["id"] == str(payout.id)
        ]
        assert (queued["paidBy"], queued["methodFull"], queued["method"]["last4"]) == ("manual", IBAN, "3000")

        payouts.process_payout(db_session, payout.id, admin_id=admin_client.admin.id, reference="SEPA-1", now=utcnow())
        assert IBAN not in admin_client.get("/admin/payouts?status=all").get_data(as_text=True)

    def test_sellers_payout_state(self, admin_client, db_session, twin):
        seller, account = connected_seller(db_session, twin, enabled=False)
        account.requirements_due = ["external_account"]
        db_session.flush()
        sellers = admin_client.get("/api/admin/payout-accounts").get_json()["sellers"]
        (row,) = [s for s in sellers if s["email"] == seller.email]
        assert (row["mode"], row["payoutsEnabled"], row["requirementsDue"]) == ("connect", False, ["external_account"])
        assert seller.email in admin_client.get("/admin/payout-accounts").get_data(as_text=True)


def test_the_dashboard_links_to_the_express_dashboard_once_onboarded(client, api, db_session, seller, twin):
    _, account = connected_seller(db_session, twin, seller=seller)
    account.details_submitted = True
    db_session.flush()

    page = client.get("/dashboard").get_data(as_text=True)
    assert "Stripe Express dashboard" in page and "Payouts enabled" in page
    opened = client.post("/payouts/setup/dashboard", data={"csrf_token": api.token})
    assert opened.status_code == 303 and f"/dev/connect/{account.stripe_account_id}?link=" in opened.headers["Location"]


def test_the_refresh_url_never_creates_an_account(client, api, db_session, seller):
    response = client.get("/payouts/setup/refresh")
    assert response.status_code == 303 and response.headers["Location"].endswith("/payouts/setup")
    assert db_session.scalars(select(ConnectAccount).where(ConnectAccount.seller_id == seller.id)).all() == []
