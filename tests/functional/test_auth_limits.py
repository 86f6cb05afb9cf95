"""Rate limits on the account endpoints, hit for real against Redis."""

from __future__ import annotations

import pytest

from tests.conftest import csrf_token, login
from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def fresh_rate_limits(redis, settings):  # type: ignore[no-untyped-def]
    """Empty this run's rate-limit counters around every test. The ``limits`` package stores
    them under its own ``LIMITS:LIMITER/`` prefix."""

    def clear() -> None:
        for pattern in (f"chatlink:{settings.celery_queue}:*", f"LIMITS:LIMITER/chatlink:{settings.celery_queue}:*"):
            for key in redis.scan_iter(pattern):
                redis.delete(key)

    clear()
    yield
    clear()


def api(client, path: str, body: object):  # type: ignore[no-untyped-def]
    return client.post(path, json=body, headers={"X-CSRFToken": csrf_token(client)})


def page(client, path: str, data: dict | None = None):  # type: ignore[no-untyped-def]
    return client.post(path, data={"csrf_token": csrf_token(client), **(data or {})})


def assert_json_429(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 429
    assert response.get_json()["error"]["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) > 0


def assert_page_429(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 429
    assert response.mimetype == "text/html"
    assert "Slow down" in response.get_data(as_text=True)
    assert int(response.headers["Retry-After"]) > 0


class TestLogInLimit:
    def test_ten_a_minute_shared_by_the_page_and_the_api(self, client, db_session) -> None:
        # Incomplete forms are refused quickly but still count: the limit is on attempts.
        for _ in range(5):
            assert page(client, "/login", {"email": "a@example.com"}).status_code == 422
        for _ in range(5):
            assert api(client, "/api/auth/login", {}).status_code == 422
        assert_json_429(api(client, "/api/auth/login", {}))
        assert_page_429(page(client, "/login", {"email": "a@example.com"}))

    def test_showing_the_page_does_not_count(self, client, db_session) -> None:
        for _ in range(12):
            assert client.get("/login").status_code == 200
        assert page(client, "/login", {"email": "a@example.com"}).status_code == 422


class TestOtherLimits:
    def test_sign_up_ten_an_hour(self, client, db_session) -> None:
        for _ in range(10):
            assert api(client, "/api/auth/signup", {"email": "a@example.com", "password": "short"}).status_code == 422
        assert_page_429(page(client, "/signup", {"email": "a@example.com", "password": "a fine long password"}))

    def test_forgot_five_a_minute(self, client, db_session) -> None:
        for _ in range(5):
            assert page(client, "/forgot", {"email": "a@example.com"}).status_code == 303
        assert_json_429(api(client, "/api/auth/forgot", {"email": "a@example.com"}))

    def test_reset_ten_an_hour(self, client, db_session) -> None:
        for _ in range(10):
            assert (
                api(client, "/api/auth/reset", {"token": "x" * 43, "newPassword": "a fine long password"}).status_code
                == 400
            )
        assert_page_429(
            page(client, f"/reset/{'x' * 43}", {"password": "a fine long password", "confirm": "a fine long password"})
        )

    def test_resend_verification_three_an_hour_per_account(self, app, client, db_session) -> None:
        login(client, UserFactory(email_verified_at=None))
        for _ in range(3):
            assert page(client, "/verify-email/resend").status_code == 303
        assert_page_429(page(client, "/verify-email/resend"))
        # Another seller on the same network has a budget of their own.
        neighbour = app.test_client()
        login(neighbour, UserFactory(email_verified_at=None))
        assert page(neighbour, "/verify-email/resend").status_code == 303
