"""Issue 16, finding 7: sign-up must not tell whether an email is registered.

Sign-up answers the same for a new and a registered address (status, body, cookies, the page
after it, and the same bcrypt work). The new address gets its confirmation link, which logs the
new seller in the first time it is opened; the registered one gets a note that someone tried to
sign up with it.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.models import OutboxEmail, User
from app.services import accounts
from tests.conftest import csrf_token
from tests.factories import PASSWORD, UserFactory

GOOD_PASSWORD = "a fine long password"


@pytest.fixture(autouse=True)
def _fresh_limits(redis, settings):  # type: ignore[no-untyped-def]
    for pattern in (f"chatlink:{settings.celery_queue}:*", f"LIMITS:LIMITER/chatlink:{settings.celery_queue}:*"):
        for key in redis.scan_iter(pattern):
            redis.delete(key)


def api_signup(app, email: str):  # type: ignore[no-untyped-def]
    client = app.test_client()
    response = client.post(
        "/api/auth/signup",
        json={"email": email, "password": GOOD_PASSWORD},
        headers={"X-CSRFToken": csrf_token(client)},
    )
    return client, response


def page_signup(app, email: str):  # type: ignore[no-untyped-def]
    client = app.test_client()
    response = client.post(
        "/signup", data={"email": email, "password": GOOD_PASSWORD, "csrf_token": csrf_token(client)}
    )
    return client, response


def outbox(db_session, recipient: str) -> list[str]:  # type: ignore[no-untyped-def]
    return list(db_session.scalars(select(OutboxEmail.template).where(OutboxEmail.recipient == recipient)))


def logged_in(client) -> bool:  # type: ignore[no-untyped-def]
    return client.get("/api/requests").status_code == 200


class TestTheSameAnswer:
    def test_the_api_answers_new_and_registered_emails_alike(self, app, db_session) -> None:
        existing = UserFactory(email="taken@example.com")
        new_client, new = api_signup(app, "fresh@example.com")
        old_client, old = api_signup(app, "Taken@Example.com")

        assert new.status_code == old.status_code == 202
        assert new.get_json() == old.get_json()
        assert set(new.get_json()) == {"message"}
        assert [c.split("=", 1)[0] for c in new.headers.getlist("Set-Cookie")] == [
            c.split("=", 1)[0] for c in old.headers.getlist("Set-Cookie")
        ]
        assert not logged_in(new_client) and not logged_in(old_client)
        # What each address receives is what differs, and only the owner of it can read that.
        assert outbox(db_session, "fresh@example.com") == ["verify_email"]
        assert outbox(db_session, "taken@example.com") == ["signup_attempt"]
        assert db_session.scalar(select(func.count()).select_from(User).where(User.email == "taken@example.com")) == 1
        db_session.refresh(existing)
        assert accounts.password_matches(PASSWORD, existing.password_hash)

    def test_the_pages_answer_alike(self, app, db_session) -> None:
        UserFactory(email="taken@example.com")
        _, new = page_signup(app, "fresh@example.com")
        old_client, old = page_signup(app, "taken@example.com")
        assert new.status_code == old.status_code == 303
        assert new.headers["Location"] == old.headers["Location"]
        page = old_client.get(old.headers["Location"]).get_data(as_text=True)
        assert "Check your inbox" in page

    def test_both_cost_one_password_hash(self, app, db_session, monkeypatch) -> None:
        UserFactory(email="taken@example.com")
        hashed: list[str] = []
        real = accounts.hash_password
        monkeypatch.setattr(
            accounts, "hash_password", lambda password, **kw: hashed.append(password) or real(password, rounds=4)
        )
        api_signup(app, "fresh@example.com")
        api_signup(app, "taken@example.com")
        assert hashed == [GOOD_PASSWORD, GOOD_PASSWORD]

    def test_repeated_attempts_send_the_owner_one_note_an_hour(self, app, db_session) -> None:
        UserFactory(email="taken@example.com")
        for _ in range(3):
            api_signup(app, "taken@example.com")
        assert outbox(db_session, "taken@example.com") == ["signup_attempt"]

    def test_bad_input_is_still_refused_the_same_way_for_both(self, app, db_session) -> None:
        UserFactory(email="taken@example.com")
        for email in ("fresh@example.com", "taken@example.com"):
            client = app.test_client()
            response = client.post(
                "/api/auth/signup",
                json={"email": email, "password": "short"},
                headers={"X-CSRFToken": csrf_token(client)},
            )
            assert response.status_code == 422 and set(response.get_json()["error"]["fields"]) == {"password"}


class TestTheConfirmationLink:
    def link(self, db_session, email: str) -> str:  # type: ignore[no-untyped-def]
        context = db_session.scalars(
            select(OutboxEmail.context).where(OutboxEmail.recipient == email, OutboxEmail.template == "verify_email")
        ).one()
        return context["verify_url"].split("5000", 1)[1]

    def test_logs_the_new_seller_in_the_first_time_only(self, app, db_session) -> None:
        api_signup(app, "fresh@example.com")
        browser = app.test_client()
        first = browser.get(self.link(db_session, "fresh@example.com"))
        assert first.status_code == 303 and first.headers["Location"] == "/profile"
        assert logged_in(browser)

        later = app.test_client()
        again = later.get(self.link(db_session, "fresh@example.com"))
        assert again.status_code == 200 and "Your email is confirmed" in again.get_data(as_text=True)
        assert not logged_in(later)

    def test_then_the_password_logs_in(self, app, db_session) -> None:
        api_signup(app, "fresh@example.com")
        app.test_client().get(self.link(db_session, "fresh@example.com"))
        client = app.test_client()
        response = client.post(
            "/api/auth/login",
            json={"email": "fresh@example.com", "password": GOOD_PASSWORD},
            headers={"X-CSRFToken": csrf_token(client)},
        )
        assert response.status_code == 200
