"""The JSON API under /api/auth/, with the CSRF token in X-CSRFToken."""

from __future__ import annotations

from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from app.db import utcnow
from app.models import OutboxEmail, User
from app.services import accounts
from tests.conftest import csrf_token, login
from tests.factories import PASSWORD, UserFactory


@pytest.fixture(autouse=True)
def fresh_rate_limits(redis, settings):  # type: ignore[no-untyped-def]
    """Empty this run's rate-limit counters and lockouts around every test. The ``limits``
    package stores counters under its own ``LIMITS:LIMITER/`` prefix."""

    def clear() -> None:
        for pattern in (f"chatlink:{settings.celery_queue}:*", f"LIMITS:LIMITER/chatlink:{settings.celery_queue}:*"):
            for key in redis.scan_iter(pattern):
                redis.delete(key)

    clear()
    yield
    clear()


def api(client, path: str, body: object = None, *, token: str | None = None):  # type: ignore[no-untyped-def]
    return client.post(path, json=body, headers={"X-CSRFToken": token or csrf_token(client)})


def reset_token(client, session, user: User) -> str:  # type: ignore[no-untyped-def]
    api(client, "/api/auth/forgot", {"email": user.email})
    email = session.scalars(select(OutboxEmail).where(OutboxEmail.template == "password_reset")).all()[-1]
    return email.context["reset_url"].rsplit("/", 1)[1]


def whoami(client) -> int:  # type: ignore[no-untyped-def]
    """200 when logged in: /login redirects a logged-in visitor."""
    return 200 if client.get("/login").status_code == 302 else 401


class TestCsrf:
    def test_the_csrf_endpoint_returns_a_token_for_this_session(self, client) -> None:
        body = client.get("/api/auth/csrf").get_json()
        assert isinstance(body["csrfToken"], str) and len(body["csrfToken"]) > 20

    @pytest.mark.parametrize("path", ["signup", "login", "logout", "forgot", "reset"])
    def test_every_post_without_the_header_is_refused_with_a_json_400(self, client, db_session, path: str) -> None:
        client.get("/api/auth/csrf")
        response = client.post(f"/api/auth/{path}", json={"email": "a@example.com", "password": "x" * 12})
        assert response.status_code == 400
        assert response.get_json()["error"]["code"] == "bad_request"
        assert "CSRF" in response.get_json()["error"]["message"]

    def test_a_token_from_another_session_is_refused(self, app, client, db_session) -> None:
        foreign = csrf_token(app.test_client())
        response = api(
            client, "/api/auth/signup", {"email": "a@example.com", "password": "a fine long password"}, token=foreign
        )
        assert response.status_code == 400
        assert db_session.scalar(select(User)) is None


class TestSignUp:
    def test_202_and_the_confirmation_link_by_email_no_session_yet(self, client, db_session) -> None:
        response = api(client, "/api/auth/signup", {"email": " New@Example.com", "password": "a fine long password"})
        assert response.status_code == 202
        assert set(response.get_json()) == {"message"}
        user = db_session.scalar(select(User).where(User.email == "new@example.com"))
        assert user is not None and user.email_verified_at is None
        # The link logs the seller in; until then this client is not (tests/functional/test_signup_privacy.py).
        assert whoami(client) == 401

    @pytest.mark.parametrize(
        ("password", "message"), [("short", "at least 10 characters"), ("1234567890", "most commonly used")]
    )
    def test_a_weak_password_is_a_422_naming_the_rule(self, client, db_session, password, message) -> None:
        response = api(client, "/api/auth/signup", {"email": "new@example.com", "password": password})
        assert response.status_code == 422
        error = response.get_json()["error"]
        assert message in error["message"] and message in error["fields"]["password"]

    def test_a_bad_email_is_a_422_on_the_email_field(self, client, db_session) -> None:
        response = api(client, "/api/auth/signup", {"email": "nope", "password": "a fine long password"})
        assert response.status_code == 422 and "email" in response.get_json()["error"]["fields"]

    def test_a_taken_email_gets_the_same_202(self, client, db_session) -> None:
        UserFactory(email="taken@example.com")
        response = api(client, "/api/auth/signup", {"email": "TAKEN@example.com", "password": "a fine long password"})
        assert response.status_code == 202

    def test_missing_fields_and_non_json_bodies_are_refused(self, client, db_session) -> None:
        missing = api(client, "/api/auth/signup", {"email": "new@example.com"})
        assert missing.status_code == 422 and missing.get_json()["error"]["fields"] == {
            "password": "This field is required."
        }
        wrong_type = api(client, "/api/auth/signup", {"email": "new@example.com", "password": 1234567890123})
        assert wrong_type.status_code == 422
        not_json = client.post("/api/auth/signup", data="email=x", headers={"X-CSRFToken": csrf_token(client)})
        assert not_json.status_code == 400 and not_json.get_json()["error"]["code"] == "bad_request"


class TestLogIn:
    def test_200_with_the_user_and_a_csrf_token(self, client, db_session) -> None:
        user = UserFactory()
        response = api(client, "/api/auth/login", {"email": user.email, "password": PASSWORD})
        assert response.status_code == 200
        body = response.get_json()
        assert body["user"]["id"] == str(user.id) and body["user"]["emailVerified"] is True
        assert whoami(client) == 200
        assert api(client, "/api/auth/logout", token=body["csrfToken"]).status_code == 200

    def test_nothing_but_the_csrf_secret_survives_log_in(self, client, db_session) -> None:
        user = UserFactory()
        before = csrf_token(client)
        with client.session_transaction() as session:
            session["planted"] = "by someone else"
        api(client, "/api/auth/login", {"email": user.email, "password": PASSWORD}, token=before)
        with client.session_transaction() as session:
            assert "planted" not in session and session["_user_id"] == user.get_id()
        # The token fetched before log-in is still this cookie jar's token.
        assert api(client, "/api/auth/logout", token=before).status_code == 200
        assert whoami(client) == 401

    def test_wrong_password_and_unknown_email_are_the_same_401(self, client, db_session) -> None:
        user = UserFactory()
        wrong = api(client, "/api/auth/login", {"email": user.email, "password": "not the password"})
        unknown = api(client, "/api/auth/login", {"email": "nobody@example.com", "password": "not the password"})
        assert wrong.status_code == unknown.status_code == 401
        assert (
            wrong.get_json()
            == unknown.get_json()
            == {"error": {"code": "invalid_credentials", "message": "Wrong email or password."}}
        )
        assert whoami(client) == 401

    def test_a_locked_account_is_a_429_with_retry_after_and_unlocks_later(self, client, db_session) -> None:
        user = UserFactory()
        with freeze_time(utcnow()) as clock:
            codes = [
                api(client, "/api/auth/login", {"email": user.email, "password": "wrong password"}).status_code
                for _ in range(5)
            ]
            assert codes == [401, 401, 401, 401, 429]
            locked = api(client, "/api/auth/login", {"email": user.email, "password": PASSWORD})
            assert locked.status_code == 429
            assert locked.get_json()["error"]["code"] == "account_locked"
            assert "15 minutes" in locked.get_json()["error"]["message"]
            assert 899 <= int(locked.headers["Retry-After"]) <= 900
            clock.tick(timedelta(minutes=15, seconds=1))
            assert api(client, "/api/auth/login", {"email": user.email, "password": PASSWORD}).status_code == 200

    def test_an_unknown_email_locks_too_so_locking_reveals_nothing(self, client, db_session) -> None:
        codes = [
            api(client, "/api/auth/login", {"email": "ghost@example.com", "password": "wrong password"}).status_code
            for _ in range(5)
        ]
        assert codes == [401, 401, 401, 401, 429]


class TestLogOut:
    def test_logout_ends_the_session(self, client, db_session) -> None:
        login(client, UserFactory())
        assert whoami(client) == 200
        response = api(client, "/api/auth/logout")
        assert response.status_code == 200 and response.get_json() == {"loggedOut": True}
        assert whoami(client) == 401

    def test_logout_when_logged_out_is_harmless(self, client, db_session) -> None:
        assert api(client, "/api/auth/logout").status_code == 200


class TestForgotAndReset:
    def test_forgot_is_always_202_with_the_same_body(self, client, db_session) -> None:
        user = UserFactory()
        known = api(client, "/api/auth/forgot", {"email": user.email})
        unknown = api(client, "/api/auth/forgot", {"email": "nobody@example.com"})
        assert known.status_code == unknown.status_code == 202
        assert known.get_json() == unknown.get_json()
        sent = db_session.scalars(select(OutboxEmail.recipient).where(OutboxEmail.template == "password_reset")).all()
        assert sent == [user.email]

    def test_reset_sets_the_new_password(self, client, db_session) -> None:
        user = UserFactory()
        token = reset_token(client, db_session, user)
        response = api(client, "/api/auth/reset", {"token": token, "newPassword": "a brand new passphrase"})
        assert response.status_code == 200
        assert response.get_json() == {"passwordReset": True, "loggedIn": False}
        db_session.refresh(user)
        assert accounts.password_matches("a brand new passphrase", user.password_hash)

    def test_reset_ends_other_sessions_but_keeps_the_users_own(self, app, client, db_session) -> None:
        user = UserFactory()
        other_device = app.test_client()
        login(client, user)
        login(other_device, user)
        token = reset_token(client, db_session, user)
        response = api(client, "/api/auth/reset", {"token": token, "newPassword": "a brand new passphrase"})
        assert response.get_json()["loggedIn"] is True
        assert whoami(client) == 200 and whoami(other_device) == 401
        assert api(client, "/api/auth/logout", token=response.get_json()["csrfToken"]).status_code == 200

    def test_a_used_or_unknown_token_is_a_400(self, client, db_session) -> None:
        user = UserFactory()
        token = reset_token(client, db_session, user)
        api(client, "/api/auth/reset", {"token": token, "newPassword": "a brand new passphrase"})
        used = api(client, "/api/auth/reset", {"token": token, "newPassword": "another passphrase!"})
        unknown = api(client, "/api/auth/reset", {"token": "x" * 43, "newPassword": "another passphrase!"})
        assert used.status_code == unknown.status_code == 400
        assert (
            used.get_json()["error"]["code"] == "invalid_token"
            and "already used" in used.get_json()["error"]["message"]
        )

    def test_an_expired_token_is_a_400(self, client, db_session) -> None:
        user = UserFactory()
        token = reset_token(client, db_session, user)
        with freeze_time(utcnow() + timedelta(minutes=61)):
            response = api(client, "/api/auth/reset", {"token": token, "newPassword": "a brand new passphrase"})
        assert response.status_code == 400 and "expired" in response.get_json()["error"]["message"]

    def test_a_weak_new_password_is_a_422_on_new_password(self, client, db_session) -> None:
        user = UserFactory()
        token = reset_token(client, db_session, user)
        response = api(client, "/api/auth/reset", {"token": token, "newPassword": "short"})
        assert response.status_code == 422
        assert "at least 10 characters" in response.get_json()["error"]["fields"]["newPassword"]
