"""Changing the account's email (issue 19): verified before it takes effect, the old address told,
other sessions ended; a taken address is not revealed; the link works once."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.models import OutboxEmail, User
from tests.conftest import csrf_token
from tests.factories import PASSWORD, ProfileFactory, UserFactory
from tests.functional.test_sessions_end import assert_logged_in, assert_logged_out, copy_of, logged_in


@pytest.fixture(autouse=True)
def _fresh_limits(redis, settings):  # type: ignore[no-untyped-def]
    for pattern in (f"chatlink:{settings.celery_queue}:*", f"LIMITS:LIMITER/chatlink:{settings.celery_queue}:*"):
        for key in redis.scan_iter(pattern):
            redis.delete(key)


@pytest.fixture
def seller(db_session):  # type: ignore[no-untyped-def]
    return ProfileFactory(slug="ada").user


def emails_to(db_session, address: str) -> list[OutboxEmail]:  # type: ignore[no-untyped-def]
    return list(db_session.scalars(select(OutboxEmail).where(OutboxEmail.recipient == address)))


def confirm_link(db_session, address: str) -> str:  # type: ignore[no-untyped-def]
    (email,) = [e for e in emails_to(db_session, address) if e.template == "email_change_verify"]
    return re.sub(r"^https?://[^/]+", "", email.context["confirm_url"])


def ask(client, new_email: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/auth/email",
        json={"newEmail": new_email, "currentPassword": password},
        headers={"X-CSRFToken": csrf_token(client)},
    )


class TestRequest:
    def test_nothing_changes_until_the_link_is_opened(self, app, db_session, seller) -> None:
        old = seller.email
        client, _ = logged_in(app, seller)
        answer = ask(client, "  New.Address@Example.org ")
        assert answer.status_code == 202 and answer.get_json() == {"pendingEmail": "new.address@example.org"}
        db_session.expire_all()
        assert db_session.get(User, seller.id).email == old
        assert confirm_link(db_session, "new.address@example.org").startswith("/account/email/")
        assert emails_to(db_session, old) == []

    def test_a_wrong_password_or_a_bad_address_is_refused(self, app, db_session, seller) -> None:
        client, _ = logged_in(app, seller)
        wrong = ask(client, "new@example.org", password="not it at all")
        assert wrong.status_code == 403 and "currentPassword" in wrong.get_json()["error"]["fields"]
        assert ask(client, "not an address").status_code == 422
        same = ask(client, seller.email.upper())
        assert same.status_code == 422 and same.get_json()["error"]["code"] == "same_email"
        assert emails_to(db_session, "new@example.org") == []

    def test_a_taken_address_gets_the_same_answer_and_its_owner_a_note(self, app, db_session, seller) -> None:
        other = UserFactory(email="taken@example.org")
        client, _ = logged_in(app, seller)
        answer = ask(client, "taken@example.org")
        assert answer.status_code == 202 and answer.get_json() == {"pendingEmail": "taken@example.org"}
        assert [e.template for e in emails_to(db_session, other.email)] == ["email_change_taken"]


class TestConfirm:
    def test_the_link_moves_the_account_tells_the_old_address_and_ends_other_sessions(
        self, app, db_session, seller
    ) -> None:
        old = seller.email
        client, _ = logged_in(app, seller)
        other_device = copy_of(app, client)
        ask(client, "moved@example.org")
        page = client.get(confirm_link(db_session, "moved@example.org"))
        assert page.status_code == 303 and page.headers["Location"].endswith("/account")
        db_session.expire_all()
        user = db_session.get(User, seller.id)
        assert user.email == "moved@example.org" and user.email_verified_at is not None
        (told,) = emails_to(db_session, old)
        assert told.template == "email_changed" and told.context["new_email"] == "m***@example.org"
        assert_logged_in(client)
        assert_logged_out(other_device)
        fresh = app.test_client()
        assert (
            fresh.post(
                "/api/auth/login",
                json={"email": "moved@example.org", "password": PASSWORD},
                headers={"X-CSRFToken": csrf_token(fresh)},
            ).status_code
            == 200
        )

    def test_the_link_works_once_and_a_second_pending_link_dies(self, app, db_session, seller) -> None:
        client, _ = logged_in(app, seller)
        ask(client, "first@example.org")
        ask(client, "second@example.org")
        first, second = confirm_link(db_session, "first@example.org"), confirm_link(db_session, "second@example.org")
        assert client.get(first).status_code == 303
        assert client.get(first).status_code == 400
        assert client.get(second).status_code == 400
        db_session.expire_all()
        assert db_session.get(User, seller.id).email == "first@example.org"

    def test_a_tampered_link_or_another_accounts_is_refused(self, app, db_session, seller) -> None:
        client, _ = logged_in(app, seller)
        ask(client, "mine@example.org")
        link = confirm_link(db_session, "mine@example.org")
        assert client.get(link[:-3] + "abc").status_code == 400
        intruder, intruder_token = logged_in(app, UserFactory())
        assert intruder.get(link).status_code == 403
        by_api = intruder.post(
            "/api/auth/email/confirm", json={"token": link.rsplit("/", 1)[1]}, headers={"X-CSRFToken": intruder_token}
        )
        assert by_api.status_code == 403 and by_api.get_json()["error"]["code"] == "wrong_account"
        db_session.expire_all()
        assert db_session.get(User, seller.id).email != "mine@example.org"

    def test_someone_took_the_address_meanwhile(self, app, db_session, seller) -> None:
        client, _ = logged_in(app, seller)
        ask(client, "race@example.org")
        UserFactory(email="race@example.org")
        db_session.flush()
        answer = client.get(confirm_link(db_session, "race@example.org"))
        assert answer.status_code == 409
        db_session.expire_all()
        assert db_session.get(User, seller.id).email != "race@example.org"


class TestAccountPage:
    def test_the_form_and_its_errors(self, app, db_session, seller) -> None:
        client, _ = logged_in(app, seller)
        page = client.get("/account").get_data(as_text=True)
        assert 'action="/account/email"' in page and 'name="new_email"' in page and 'name="email_password"' in page
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        wrong = client.post(
            "/account/email", data={"new_email": "x@example.org", "email_password": "nope", "csrf_token": token}
        )
        assert wrong.status_code == 403 and "That password is not right." in wrong.get_data(as_text=True)
        ok = client.post(
            "/account/email",
            data={"new_email": "x@example.org", "email_password": PASSWORD, "csrf_token": token},
            follow_redirects=True,
        )
        assert "We sent a link to x@example.org." in ok.get_data(as_text=True)
