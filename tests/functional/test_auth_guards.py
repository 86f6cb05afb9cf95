"""Who gets in: the admin guard, log-in required, the session loader, headers and cookies."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask_login import login_required

from app.db import utcnow
from app.web.auth import admin_required, load_user, safe_next
from tests.conftest import login
from tests.factories import AdminFactory, UserFactory


@pytest.fixture
def guarded_app(db_session, make_app, settings):  # type: ignore[no-untyped-def]
    """An app with a few guarded routes. ``db_session`` comes first so the new app keeps using
    the test's transaction."""
    app = make_app(settings)

    def ok():  # type: ignore[no-untyped-def]
        return {"ok": True}

    app.add_url_rule("/admin-only", "admin_page", admin_required(ok))
    app.add_url_rule("/api/admin-only", "admin_api", admin_required(ok))
    app.add_url_rule("/members", "members_page", login_required(ok))
    app.add_url_rule("/api/members", "members_api", login_required(ok))
    return app


class TestAdminRequired:
    def test_anonymous_visitors_are_sent_to_log_in(self, guarded_app) -> None:
        response = guarded_app.test_client().get("/admin-only?tab=reports")
        assert response.status_code == 302
        assert response.headers["Location"] == "/login?next=/admin-only?tab%3Dreports"

    def test_anonymous_api_calls_get_a_json_401(self, guarded_app) -> None:
        response = guarded_app.test_client().get("/api/admin-only")
        assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"

    def test_a_seller_gets_403_on_pages_and_api(self, guarded_app) -> None:
        client = guarded_app.test_client()
        login(client, UserFactory())
        page = client.get("/admin-only")
        assert page.status_code == 403 and page.mimetype == "text/html"
        assert "admins only" in page.get_data(as_text=True)
        api = client.get("/api/admin-only")
        assert api.status_code == 403 and api.get_json()["error"]["code"] == "forbidden"

    def test_an_admin_gets_through(self, guarded_app) -> None:
        client = guarded_app.test_client()
        login(client, AdminFactory())
        assert client.get("/admin-only").get_json() == {"ok": True}
        assert client.get("/api/admin-only").get_json() == {"ok": True}

    def test_the_guard_keeps_the_view_name(self) -> None:
        def reports():  # type: ignore[no-untyped-def]
            return "reports"

        assert admin_required(reports).__name__ == "reports"


class TestLoginRequired:
    def test_pages_redirect_to_log_in_and_the_api_answers_401(self, guarded_app) -> None:
        client = guarded_app.test_client()
        assert client.get("/members").headers["Location"] == "/login?next=/members"
        response = client.get("/api/members")
        assert response.status_code == 401 and response.get_json()["error"]["message"] == "Log in first."

    def test_a_session_from_before_a_reset_is_refused(self, guarded_app, db_session) -> None:
        user = UserFactory()
        client = guarded_app.test_client()
        login(client, user)
        assert client.get("/api/members").status_code == 200
        user.session_version += 1
        db_session.flush()
        assert client.get("/api/members").status_code == 401

    def test_a_deleted_account_is_logged_out(self, guarded_app, db_session) -> None:
        user = UserFactory()
        client = guarded_app.test_client()
        login(client, user)
        user.deleted_at = utcnow() - timedelta(seconds=1)
        db_session.flush()
        assert client.get("/api/members").status_code == 401

    @pytest.mark.parametrize("cookie_value", ["not-a-uuid:1", "", ":"])
    def test_a_malformed_session_value_loads_nobody(self, app, db_session, cookie_value: str) -> None:
        with app.test_request_context():
            assert load_user(cookie_value) is None


class TestSafeNext:
    @pytest.mark.parametrize(
        "target",
        ["https://evil.example", "//evil.example", "/\\evil.example", "evil", "/ok\r\nSet-Cookie: x=1", None, ""],
    )
    def test_anything_leaving_the_site_falls_back(self, target) -> None:  # type: ignore[no-untyped-def]
        assert safe_next(target) == "/dashboard"

    def test_a_local_path_with_a_query_is_kept(self) -> None:
        assert safe_next("/requests?status=PENDING") == "/requests?status=PENDING"


class TestHeadersAndCookies:
    def test_account_pages_carry_security_headers_and_are_not_cached(self, client) -> None:
        response = client.get("/login")
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        assert response.headers["Cache-Control"] == "no-store"

    def test_the_account_pages_have_no_inline_script_or_style(self, client) -> None:
        for path in ("/signup", "/login", "/forgot", "/reset/whatever"):
            page = client.get(path).get_data(as_text=True)
            assert "<script>" not in page and "style=" not in page and "<style" not in page, path

    def test_the_session_cookie_is_http_only_and_same_site_lax(self, client) -> None:
        client.get("/api/auth/csrf")
        cookie = client.get_cookie("session")
        assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
