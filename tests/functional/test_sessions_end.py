"""Issue 16, finding 3: log-out, a password change and "sign out everywhere" end sessions on the
server, so a session cookie copied before them opens nothing afterwards.

Sessions carry the account's session generation (``users.session_version``); each of these
actions bumps it and the user loader refuses any session of an older generation.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.models import EventLog, User
from app.services.accounts import password_matches
from tests.conftest import csrf_token
from tests.factories import PASSWORD, ProfileFactory

NEW_PASSWORD = "a brand new passphrase for ada"


@pytest.fixture(autouse=True)
def _fresh_limits(redis, settings):  # type: ignore[no-untyped-def]
    for pattern in (f"chatlink:{settings.celery_queue}:*", f"LIMITS:LIMITER/chatlink:{settings.celery_queue}:*"):
        for key in redis.scan_iter(pattern):
            redis.delete(key)


@pytest.fixture
def seller(db_session):  # type: ignore[no-untyped-def]
    return ProfileFactory(slug="ada").user


def logged_in(app, user: User):  # type: ignore[no-untyped-def]
    """A client logged in through the API, as a script or a browser would be."""
    client = app.test_client()
    token = csrf_token(client)
    response = client.post(
        "/api/auth/login", json={"email": user.email, "password": PASSWORD}, headers={"X-CSRFToken": token}
    )
    assert response.status_code == 200
    return client, token


def copy_of(app, client):  # type: ignore[no-untyped-def]
    """Another client holding a copy of ``client``'s session cookie (a stolen cookie)."""
    thief = app.test_client()
    thief.set_cookie("session", client.get_cookie("session").value)
    return thief


def assert_logged_out(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/requests").status_code == 401
    dashboard = client.get("/dashboard")
    assert dashboard.status_code == 302 and dashboard.headers["Location"].startswith("/login")


def assert_logged_in(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/requests").status_code == 200
    assert client.get("/dashboard").status_code == 200


class TestLogOut:
    def test_a_cookie_copied_before_the_api_log_out_dies_with_it(self, app, db_session, seller) -> None:
        client, token = logged_in(app, seller)
        thief = copy_of(app, client)
        assert_logged_in(thief)

        assert client.post("/api/auth/logout", headers={"X-CSRFToken": token}).status_code == 200

        assert_logged_out(thief)
        assert_logged_out(client)

    def test_a_cookie_copied_before_the_page_log_out_dies_with_it(self, app, db_session, seller) -> None:
        client, token = logged_in(app, seller)
        thief = copy_of(app, client)

        assert client.post("/logout", data={"csrf_token": token}).status_code == 303

        assert_logged_out(thief)

    def test_the_csrf_token_still_works_after_log_out(self, app, db_session, seller) -> None:
        client, token = logged_in(app, seller)
        client.post("/api/auth/logout", headers={"X-CSRFToken": token})
        again = client.post(
            "/api/auth/login", json={"email": seller.email, "password": PASSWORD}, headers={"X-CSRFToken": token}
        )
        assert again.status_code == 200
        assert_logged_in(client)


class TestSignOutEverywhere:
    def test_the_api_ends_every_other_session_and_keeps_this_one(self, app, db_session, seller) -> None:
        client, token = logged_in(app, seller)
        laptop, _ = logged_in(app, seller)
        thief = copy_of(app, laptop)

        response = client.post("/api/auth/sign-out-everywhere", headers={"X-CSRFToken": token})

        assert response.status_code == 200
        assert response.get_json()["signedOutElsewhere"] is True
        assert_logged_out(laptop)
        assert_logged_out(thief)
        assert_logged_in(client)
        events = db_session.scalars(select(EventLog.type).where(EventLog.ref_id == str(seller.id))).all()
        assert "auth.sessions_ended" in events

    def test_the_account_page_has_the_button(self, app, db_session, seller) -> None:
        client, token = logged_in(app, seller)
        laptop, _ = logged_in(app, seller)
        assert 'action="/account/sign-out-everywhere"' in client.get("/account").get_data(as_text=True)

        response = client.post("/account/sign-out-everywhere", data={"csrf_token": token})

        assert response.status_code == 303
        assert_logged_out(laptop)
        assert_logged_in(client)

    def test_needs_a_session(self, app, db_session) -> None:
        client = app.test_client()
        response = client.post("/api/auth/sign-out-everywhere", headers={"X-CSRFToken": csrf_token(client)})
        assert response.status_code == 401


class TestChangePassword:
    def test_the_api_changes_it_ends_other_sessions_and_keeps_this_one(self, app, db_session, seller) -> None:
        client, token = logged_in(app, seller)
        laptop, _ = logged_in(app, seller)

        response = client.post(
            "/api/auth/password",
            json={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD},
            headers={"X-CSRFToken": token},
        )

        assert response.status_code == 200
        assert_logged_out(laptop)
        assert_logged_in(client)
        db_session.refresh(seller)
        assert password_matches(NEW_PASSWORD, seller.password_hash)

    def test_a_wrong_current_password_changes_nothing(self, app, db_session, seller) -> None:
        client, token = logged_in(app, seller)
        laptop, _ = logged_in(app, seller)
        response = client.post(
            "/api/auth/password",
            json={"currentPassword": "not the password", "newPassword": NEW_PASSWORD},
            headers={"X-CSRFToken": token},
        )
        assert response.status_code == 403
        assert response.get_json()["error"]["fields"] == {"currentPassword": "That password is not right."}
        assert_logged_in(laptop)
        db_session.refresh(seller)
        assert password_matches(PASSWORD, seller.password_hash)

    def test_a_weak_new_password_is_a_422(self, app, db_session, seller) -> None:
        client, token = logged_in(app, seller)
        response = client.post(
            "/api/auth/password",
            json={"currentPassword": PASSWORD, "newPassword": "short"},
            headers={"X-CSRFToken": token},
        )
        assert response.status_code == 422
        assert set(response.get_json()["error"]["fields"]) == {"newPassword"}

    def test_the_account_page_form(self, app, db_session, seller) -> None:
        client, token = logged_in(app, seller)
        laptop, _ = logged_in(app, seller)
        form = {
            "csrf_token": token,
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        }

        response = client.post("/account/password", data=form)

        assert response.status_code == 303
        assert_logged_out(laptop)
        assert_logged_in(client)
