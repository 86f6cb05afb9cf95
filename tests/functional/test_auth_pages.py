"""The account pages through the Flask client, with real CSRF tokens."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from app.db import utcnow
from app.models import EventLog, OutboxEmail, User
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


def post(client, path: str, data: dict | None = None, **kwargs):  # type: ignore[no-untyped-def]
    return client.post(path, data={"csrf_token": csrf_token(client), **(data or {})}, **kwargs)


def is_logged_in(client) -> bool:  # type: ignore[no-untyped-def]
    # /login sends a logged-in visitor on to the dashboard.
    return client.get("/login").status_code == 302


def outbox(session, template: str) -> list[OutboxEmail]:  # type: ignore[no-untyped-def]
    return list(session.scalars(select(OutboxEmail).where(OutboxEmail.template == template)))


def link_token(email: OutboxEmail, key: str) -> str:
    return email.context[key].rsplit("/", 1)[1]


class TestSignUpPage:
    def test_the_page_has_labelled_fields_and_a_csrf_token(self, client) -> None:
        page = client.get("/signup").get_data(as_text=True)
        assert '<label for="email">Email</label>' in page and '<label for="password">Password</label>' in page
        assert 'name="csrf_token"' in page
        assert 'autocomplete="new-password"' in page

    def test_signing_up_sends_the_link_that_logs_in_and_goes_to_the_profile(self, client, db_session) -> None:
        response = post(client, "/signup", {"email": " Fresh@Example.com ", "password": "a fine long password"})
        assert response.status_code == 303 and response.headers["Location"] == "/signup?sent=1"
        assert "Check your inbox" in client.get("/signup?sent=1").get_data(as_text=True)
        user = db_session.scalar(select(User).where(User.email == "fresh@example.com"))
        assert user is not None and user.email_verified_at is None
        assert not is_logged_in(client)
        [email] = outbox(db_session, "verify_email")
        assert email.recipient == "fresh@example.com"
        opened = client.get(f"/verify-email/{link_token(email, 'verify_url')}")
        assert opened.status_code == 303 and opened.headers["Location"] == "/profile"
        assert is_logged_in(client)

    @pytest.mark.parametrize(
        ("password", "message"),
        [("tiny", "Use at least 10 characters."), ("qwertyuiop", "most commonly used")],
    )
    def test_a_weak_password_is_shown_next_to_the_field(self, client, db_session, password, message) -> None:
        response = post(client, "/signup", {"email": "fresh@example.com", "password": password})
        assert response.status_code == 422
        page = response.get_data(as_text=True)
        assert message in page and 'id="password-error"' in page and 'aria-invalid="true"' in page
        assert db_session.scalar(select(User)) is None

    def test_a_taken_email_gets_the_same_answer(self, client, db_session) -> None:
        UserFactory(email="taken@example.com")
        response = post(client, "/signup", {"email": "Taken@example.com", "password": "a fine long password"})
        assert response.status_code == 303 and response.headers["Location"] == "/signup?sent=1"

    def test_a_post_without_csrf_token_is_refused_and_creates_nothing(self, client, db_session) -> None:
        response = client.post("/signup", data={"email": "fresh@example.com", "password": "a fine long password"})
        assert response.status_code == 400
        assert "CSRF" in response.get_data(as_text=True)
        assert db_session.scalar(select(User)) is None


class TestLogInPage:
    def test_the_right_password_goes_to_the_dashboard(self, client, db_session) -> None:
        user = UserFactory()
        response = post(client, "/login", {"email": user.email.upper(), "password": PASSWORD})
        assert response.status_code == 303 and response.headers["Location"] == "/dashboard"
        assert is_logged_in(client)

    @pytest.mark.parametrize(
        ("next_", "expected"),
        [
            ("/requests?status=PENDING", "/requests?status=PENDING"),
            ("https://evil.example/", "/dashboard"),
            ("//evil.example/", "/dashboard"),
            ("/\\evil.example", "/dashboard"),
            ("javascript:alert(1)", "/dashboard"),
        ],
    )
    def test_next_is_followed_only_within_the_site(self, client, db_session, next_: str, expected: str) -> None:
        user = UserFactory()
        response = post(client, "/login", {"email": user.email, "password": PASSWORD, "next": next_})
        assert response.headers["Location"] == expected

    def test_the_login_page_carries_next_into_the_form(self, client) -> None:
        page = client.get("/login?next=/requests").get_data(as_text=True)
        assert 'name="next" type="hidden" value="/requests"' in page

    def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(self, client, db_session) -> None:
        user = UserFactory()
        wrong = post(client, "/login", {"email": user.email, "password": "not the password"})
        unknown = post(client, "/login", {"email": "nobody@example.com", "password": "not the password"})
        assert wrong.status_code == unknown.status_code == 422
        assert "Wrong email or password." in wrong.get_data(as_text=True)
        assert "Wrong email or password." in unknown.get_data(as_text=True)
        assert not is_logged_in(client)
        assert db_session.scalar(select(EventLog.ref_id).where(EventLog.type == "auth.login_failed")) == str(user.id)

    def test_five_failures_lock_and_the_lock_lifts_after_15_minutes(self, client, db_session) -> None:
        user = UserFactory()
        with freeze_time(utcnow()) as clock:
            for _ in range(4):
                assert post(client, "/login", {"email": user.email, "password": "wrong password"}).status_code == 422
            locked = post(client, "/login", {"email": user.email, "password": "wrong password"})
            assert locked.status_code == 429
            assert "locked" in locked.get_data(as_text=True) and "15 minutes" in locked.get_data(as_text=True)
            # Flask-Limiter rewrites Retry-After as whole seconds from now, rounding down.
            assert 899 <= int(locked.headers["Retry-After"]) <= 900
            refused = post(client, "/login", {"email": user.email, "password": PASSWORD})
            assert refused.status_code == 429 and not is_logged_in(client)
            clock.tick(timedelta(minutes=15, seconds=1))
            assert post(client, "/login", {"email": user.email, "password": PASSWORD}).status_code == 303
            # Checked inside the frozen clock: a session cookie signed in the future is refused.
            assert is_logged_in(client)

    def test_a_post_without_csrf_token_is_refused(self, client, db_session) -> None:
        user = UserFactory()
        client.get("/login")
        response = client.post("/login", data={"email": user.email, "password": PASSWORD})
        assert response.status_code == 400 and not is_logged_in(client)

    def test_log_in_starts_a_new_session_that_keeps_only_the_csrf_secret(self, client, db_session) -> None:
        user = UserFactory()
        before = csrf_token(client)
        with client.session_transaction() as session:
            session["planted"] = "before log-in"
        post(client, "/login", {"email": user.email, "password": PASSWORD})
        with client.session_transaction() as session:
            assert "planted" not in session and session["_user_id"] == user.get_id()
        # A page opened in another tab before log-in can still be submitted.
        assert client.post("/logout", data={"csrf_token": before}).status_code == 303
        assert not is_logged_in(client)


class TestLogOut:
    def test_the_nav_shows_a_log_out_form_with_csrf(self, client, db_session) -> None:
        login(client, UserFactory())
        page = client.get("/signup", follow_redirects=True).get_data(as_text=True)
        assert re.search(r'<form method="post" action="/logout">\s*<input type="hidden" name="csrf_token"', page)

    def test_logging_out_ends_the_session(self, client, db_session) -> None:
        user = UserFactory()
        login(client, user)
        response = post(client, "/logout")
        assert response.status_code == 303 and response.headers["Location"] == "/"
        assert not is_logged_in(client)
        assert db_session.scalar(select(EventLog.ref_id).where(EventLog.type == "auth.logout")) == str(user.id)

    def test_log_out_without_csrf_token_is_refused(self, client, db_session) -> None:
        login(client, UserFactory())
        assert client.post("/logout").status_code == 400
        assert is_logged_in(client)


class TestForgotAndReset:
    def test_forgot_answers_the_same_whether_or_not_the_email_exists(self, client, db_session) -> None:
        user = UserFactory()
        known = post(client, "/forgot", {"email": user.email})
        unknown = post(client, "/forgot", {"email": "nobody@example.com"})
        assert known.status_code == unknown.status_code == 303
        assert known.headers["Location"] == unknown.headers["Location"] == "/forgot?sent=1"
        assert "If an account exists for that email" in client.get("/forgot?sent=1").get_data(as_text=True)
        assert [e.recipient for e in outbox(db_session, "password_reset")] == [user.email]

    def reset_token(self, client, db_session, user: User) -> str:  # type: ignore[no-untyped-def]
        post(client, "/forgot", {"email": user.email})
        return link_token(outbox(db_session, "password_reset")[-1], "reset_url")

    def test_reset_changes_the_password_and_ends_every_other_session(self, app, client, db_session) -> None:
        user = UserFactory()
        elsewhere = app.test_client()
        login(elsewhere, user)
        assert is_logged_in(elsewhere)
        token = self.reset_token(client, db_session, user)
        page = client.get(f"/reset/{token}")
        assert page.status_code == 200 and page.headers["Referrer-Policy"] == "no-referrer"
        data = {"password": "a brand new passphrase", "confirm": "a brand new passphrase"}
        response = post(client, f"/reset/{token}", data)
        assert response.status_code == 303 and response.headers["Location"] == "/login"
        db_session.refresh(user)
        assert accounts.password_matches("a brand new passphrase", user.password_hash)
        assert not is_logged_in(elsewhere)
        assert post(client, "/login", {"email": user.email, "password": "a brand new passphrase"}).status_code == 303

    def test_the_session_that_resets_stays_logged_in(self, client, db_session) -> None:
        user = UserFactory()
        login(client, user)
        token = self.reset_token(client, db_session, user)
        data = {"password": "a brand new passphrase", "confirm": "a brand new passphrase"}
        assert post(client, f"/reset/{token}", data).headers["Location"] == "/dashboard"
        assert is_logged_in(client)

    def test_a_used_link_is_refused(self, client, db_session) -> None:
        user = UserFactory()
        token = self.reset_token(client, db_session, user)
        data = {"password": "a brand new passphrase", "confirm": "a brand new passphrase"}
        post(client, f"/reset/{token}", data)
        again = post(client, f"/reset/{token}", {"password": "third passphrase!", "confirm": "third passphrase!"})
        assert again.status_code == 400 and "already used" in again.get_data(as_text=True)
        assert client.get(f"/reset/{token}").status_code == 400

    def test_an_expired_link_is_refused(self, client, db_session) -> None:
        user = UserFactory()
        token = self.reset_token(client, db_session, user)
        with freeze_time(utcnow() + timedelta(hours=1, seconds=1)):
            page = client.get(f"/reset/{token}")
            data = {"password": "a brand new passphrase", "confirm": "a brand new passphrase"}
            posted = post(client, f"/reset/{token}", data)
        assert page.status_code == posted.status_code == 400
        assert "expired" in page.get_data(as_text=True)
        db_session.refresh(user)
        assert accounts.password_matches(PASSWORD, user.password_hash)

    def test_mismatched_or_weak_passwords_are_shown_on_the_form(self, client, db_session) -> None:
        user = UserFactory()
        token = self.reset_token(client, db_session, user)
        differ = post(client, f"/reset/{token}", {"password": "a brand new passphrase", "confirm": "something else"})
        assert differ.status_code == 422 and "The two passwords differ." in differ.get_data(as_text=True)
        weak = post(client, f"/reset/{token}", {"password": "password123", "confirm": "password123"})
        assert weak.status_code == 422 and "most commonly used" in weak.get_data(as_text=True)
        db_session.refresh(user)
        assert accounts.password_matches(PASSWORD, user.password_hash)


class TestEmailVerification:
    def test_the_emailed_link_confirms_the_address(self, client, db_session) -> None:
        post(client, "/signup", {"email": "fresh@example.com", "password": "a fine long password"})
        token = link_token(outbox(db_session, "verify_email")[0], "verify_url")
        assert client.get(f"/verify-email/{token}").status_code == 303  # the first time, it logs in
        response = client.get(f"/verify-email/{token}")
        assert response.status_code == 200 and "Email confirmed" in response.get_data(as_text=True)
        user = db_session.scalar(select(User).where(User.email == "fresh@example.com"))
        db_session.refresh(user)
        assert user.email_verified_at is not None

    def test_a_tampered_link_is_refused(self, client, db_session, settings) -> None:
        user = UserFactory(email_verified_at=None)
        token = accounts.make_verification_token(user, secret_key=settings.secret_key)
        response = client.get(f"/verify-email/{token[:-3]}xyz")
        assert response.status_code == 400 and "not valid" in response.get_data(as_text=True)
        db_session.refresh(user)
        assert user.email_verified_at is None

    def test_another_accounts_link_is_refused_while_logged_in(self, client, db_session, settings) -> None:
        owner, viewer = UserFactory(email_verified_at=None), UserFactory(email_verified_at=None)
        login(client, viewer)
        token = accounts.make_verification_token(owner, secret_key=settings.secret_key)
        response = client.get(f"/verify-email/{token}")
        assert response.status_code == 403 and "different account" in response.get_data(as_text=True)
        db_session.refresh(owner)
        assert owner.email_verified_at is None

    def test_resend_queues_a_new_link(self, client, db_session) -> None:
        user = UserFactory(email_verified_at=None)
        login(client, user)
        response = post(client, "/verify-email/resend")
        assert response.status_code == 303 and response.headers["Location"] == "/dashboard"
        assert [e.recipient for e in outbox(db_session, "verify_email")] == [user.email]

    def test_resend_when_already_verified_sends_nothing(self, client, db_session) -> None:
        login(client, UserFactory())
        post(client, "/verify-email/resend")
        assert outbox(db_session, "verify_email") == []

    def test_resend_needs_a_login_and_a_csrf_token(self, client, db_session) -> None:
        anonymous = post(client, "/verify-email/resend")
        assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/login?next=")
        login(client, UserFactory(email_verified_at=None))
        assert client.post("/verify-email/resend").status_code == 400
        assert outbox(db_session, "verify_email") == []
