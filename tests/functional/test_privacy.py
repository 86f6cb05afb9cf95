"""The seller's account page: download the data, delete the account (every session ends, no PII
is left anywhere), through the Flask client."""

from __future__ import annotations

from sqlalchemy import select

from app.db import utcnow
from app.models import CallRequest, EmailStatus, OutboxEmail, RequestStatus, User
from app.services.privacy import scrub_farewell_emails
from tests.conftest import csrf_token, login
from tests.factories import PASSWORD, CallRequestFactory, ProfileFactory, TransactionFactory
from tests.functional.test_profile_page import assert_no_inline_code
from tests.trust_support import finished_call, fresh_rate_limits, page_csrf, where_is  # noqa: F401 (fresh_rate_limits is autouse)

EMAIL = "leaving.seller@example.com"


class TestAccountPage:
    def test_needs_a_login(self, client, db_session) -> None:
        assert client.get("/account").status_code == 302
        assert client.get("/account/export.json").status_code == 302

    def test_shows_both_actions(self, client, db_session) -> None:
        login(client, ProfileFactory(user__email=EMAIL).user)
        response = client.get("/account")
        html = response.get_data(as_text=True)
        assert response.status_code == 200 and EMAIL in html
        assert 'href="/account/export.json"' in html and 'action="/account/delete"' in html
        assert 'autocomplete="current-password"' in html
        assert response.headers["Cache-Control"] == "no-store"
        assert_no_inline_code(html)

    def test_the_export_is_a_json_download_of_the_sellers_own_data(self, client, db_session) -> None:
        profile = ProfileFactory(user__email=EMAIL, display_name="Leaving Seller")
        mine = finished_call(seller=profile.user)
        theirs = finished_call()
        login(client, profile.user)

        response = client.get("/account/export.json")
        assert response.status_code == 200 and response.mimetype == "application/json"
        assert response.headers["Content-Disposition"].startswith('attachment; filename="chatlink-data-')
        data = response.get_json()
        assert data["account"]["email"] == EMAIL and data["profile"]["displayName"] == "Leaving Seller"
        assert [r["id"] for r in data["requests"]] == [str(mine.id)]
        assert str(theirs.id) not in response.get_data(as_text=True)


class TestDeleteAccount:
    def test_a_wrong_password_keeps_the_account(self, client, db_session) -> None:
        seller = ProfileFactory(user__email=EMAIL).user
        login(client, seller)
        token = page_csrf(client.get("/account").get_data(as_text=True))
        response = client.post("/account/delete", data={"csrf_token": token, "password": "not it"})
        assert response.status_code == 403 and "That password is not right." in response.get_data(as_text=True)
        db_session.expire_all()
        assert db_session.get(User, seller.id).deleted_at is None
        assert client.get("/dashboard").status_code == 200

    def test_deletes_ends_every_session_and_leaves_no_pii(self, app, client, db_session, settings, enqueued) -> None:
        profile = ProfileFactory(user__email=EMAIL, display_name="Leaving Seller", slug="leaving")
        seller = profile.user
        pending = CallRequestFactory(transaction=TransactionFactory(seller=seller, buyer_email="waiting@example.org"))
        finished_call(seller=seller, buyer_email="past.buyer@example.org")
        other_device = app.test_client()
        login(other_device, seller)
        login(client, seller)
        assert other_device.get("/dashboard").status_code == 200

        token = page_csrf(client.get("/account").get_data(as_text=True))
        response = client.post("/account/delete", data={"csrf_token": token, "password": PASSWORD})
        assert response.status_code == 303 and response.headers["Location"] == "/"

        # Signed out here and on every other device; the paywall is gone; the password is dead.
        assert client.get("/dashboard").status_code == 302
        assert other_device.get("/dashboard").status_code == 302
        assert client.get("/u/leaving").status_code == 404
        login_again = client.post(
            "/api/auth/login", json={"email": EMAIL, "password": PASSWORD}, headers={"X-CSRFToken": csrf_token(client)}
        )
        assert login_again.status_code == 401

        db_session.expire_all()
        assert db_session.get(CallRequest, pending.id).status == RequestStatus.DECLINED
        assert ("tasks.request_payments.release_hold", (str(pending.id),)) in [(n, a) for n, a, _ in enqueued]

        # Once the goodbye email is out, the address is nowhere in the database.
        farewell = db_session.scalar(select(OutboxEmail).where(OutboxEmail.template == "account_deleted"))
        assert farewell.recipient == EMAIL
        farewell.status = EmailStatus.SENT
        db_session.flush()
        scrub_farewell_emails(db_session, utcnow(), settings)
        assert where_is(db_session, EMAIL) == {}
        # The seller's name stays only in mail addressed to their buyers (the buyers' own records).
        assert set(where_is(db_session, "Leaving Seller")) <= {"email_outbox.context", "email_outbox.subject"}
        named = db_session.scalars(select(OutboxEmail.recipient).where(OutboxEmail.context["seller_name"].astext != ""))
        assert set(named) <= {"waiting@example.org", "past.buyer@example.org"}
        assert "transactions.buyer_email" in where_is(db_session, "past.buyer@example.org")

    def test_the_json_api(self, client, db_session) -> None:
        seller = ProfileFactory(user__email=EMAIL).user
        login(client, seller)
        headers = {"X-CSRFToken": csrf_token(client)}
        assert client.post("/api/account/delete", json={}, headers=headers).status_code == 422
        wrong = client.post("/api/account/delete", json={"password": "nope"}, headers=headers)
        assert (wrong.status_code, wrong.get_json()["error"]["code"]) == (403, "wrong_password")
        done = client.post("/api/account/delete", json={"password": PASSWORD}, headers=headers)
        assert done.status_code == 200 and done.get_json() == {"deleted": True}
        assert client.get("/api/blocks").status_code == 401

    def test_refused_while_an_accepted_call_is_ahead(self, client, db_session) -> None:
        call = finished_call(status=RequestStatus.ACCEPTED)
        login(client, db_session.get(User, call.seller_id))
        headers = {"X-CSRFToken": csrf_token(client)}
        refused = client.post("/api/account/delete", json={"password": PASSWORD}, headers=headers)
        assert (refused.status_code, refused.get_json()["error"]["code"]) == (409, "call_in_progress")

    def test_password_guesses_are_rate_limited(self, client, db_session) -> None:
        seller = ProfileFactory(user__email=EMAIL).user
        login(client, seller)
        headers = {"X-CSRFToken": csrf_token(client)}
        answers = [
            client.post("/api/account/delete", json={"password": f"guess{n}"}, headers=headers) for n in range(6)
        ]
        assert [a.status_code for a in answers] == [403] * 5 + [429]
        assert client.post("/api/account/delete", json={"password": PASSWORD}, headers=headers).status_code == 429
        db_session.expire_all()
        assert db_session.get(User, seller.id).deleted_at is None
