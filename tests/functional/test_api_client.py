"""The JSON API as a script uses it (README, "The JSON API"): a fresh client with an empty cookie
jar fetches one CSRF token, logs in, lists its requests, accepts one, and goes on with the same
token. Every test starts from no cookies."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.models import CallRequest, RequestStatus, User
from tests.factories import PASSWORD, CallRequestFactory, ProfileFactory
from tests.functional.test_auth_api import api
from tests.trust_support import fresh_rate_limits  # noqa: F401 (autouse)

CAPTURE = "tasks.request_payments.capture_accepted"


@pytest.fixture
def script(app, db_session):  # type: ignore[no-untyped-def]
    """A client with no cookies at all, like curl with a new cookie jar."""
    client = app.test_client()
    assert client.get_cookie("session") is None
    return client


class TestOneTokenForTheWholeSession:
    def test_log_in_list_accept_and_log_out(self, script, db_session, enqueued) -> None:  # type: ignore[no-untyped-def]
        seller = ProfileFactory(display_name="Ada").user
        pending = CallRequestFactory(transaction__seller=seller)
        token = script.get("/api/auth/csrf").get_json()["csrfToken"]

        logged_in = api(script, "/api/auth/login", token=token, body={"email": seller.email, "password": PASSWORD})
        assert logged_in.status_code == 200 and logged_in.get_json()["user"]["id"] == str(seller.id)

        listed = script.get("/api/requests?status=pending")
        assert listed.status_code == 200
        assert [item["id"] for item in listed.get_json()["requests"]] == [str(pending.id)]

        accepted = api(script, f"/api/requests/{pending.id}/accept", token=token)
        assert accepted.status_code == 200, accepted.get_json()
        assert accepted.get_json()["request"]["status"] == "ACCEPTED"
        assert accepted.get_json()["request"]["joinUrl"].startswith("http")
        db_session.expire_all()
        assert db_session.get(CallRequest, pending.id).status == RequestStatus.ACCEPTED
        assert enqueued.names().count(CAPTURE) == 1

        assert api(script, "/api/auth/logout", token=token).status_code == 200
        assert script.get("/api/requests").status_code == 401

    def test_the_token_in_the_log_in_answer_works_too(self, script, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = ProfileFactory().user
        first = script.get("/api/auth/csrf").get_json()["csrfToken"]
        answer = api(
            script, "/api/auth/login", token=first, body={"email": seller.email, "password": PASSWORD}
        ).get_json()
        assert (
            api(script, "/api/profile", token=answer["csrfToken"], body={"bio": "Ask me anything."}).status_code == 200
        )

    def test_sign_up_then_log_out_and_in_again_with_the_same_token(self, script, db_session) -> None:  # type: ignore[no-untyped-def]
        token = script.get("/api/auth/csrf").get_json()["csrfToken"]
        credentials = {"email": "new@example.com", "password": "a fine long password"}
        assert api(script, "/api/auth/signup", token=token, body=credentials).status_code == 202
        assert api(script, "/api/auth/logout", token=token).status_code == 200
        assert api(script, "/api/auth/login", token=token, body=credentials).status_code == 200
        assert script.get("/api/requests").get_json() == {"requests": []}


class TestWhatIsStillRefused:
    def test_a_post_without_a_csrf_session_says_what_to_do(self, script, db_session) -> None:  # type: ignore[no-untyped-def]
        response = script.post("/api/auth/signup", json={"email": "new@example.com", "password": "a fine long pw"})
        assert response.status_code == 400
        error = response.get_json()["error"]
        assert error["code"] == "bad_request"
        assert "CSRF" in error["message"] and "GET /api/auth/csrf" in error["message"]
        assert db_session.scalar(select(User)) is None

    def test_a_token_without_its_cookie_is_refused(self, app, script, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = ProfileFactory().user
        token = app.test_client().get("/api/auth/csrf").get_json()["csrfToken"]  # another cookie jar
        response = api(script, "/api/auth/login", token=token, body={"email": seller.email, "password": PASSWORD})
        assert response.status_code == 400 and "X-CSRFToken" in response.get_json()["error"]["message"]
        assert script.get("/api/requests").status_code == 401

    def test_a_token_from_before_log_in_is_no_use_in_another_jar(self, app, script, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = ProfileFactory().user
        pending = CallRequestFactory(transaction__seller=seller)
        token = script.get("/api/auth/csrf").get_json()["csrfToken"]
        api(script, "/api/auth/login", token=token, body={"email": seller.email, "password": PASSWORD})
        other = app.test_client()
        other.get("/api/auth/csrf")
        assert api(other, f"/api/requests/{pending.id}/accept", token=token).status_code == 400
        db_session.expire_all()
        assert db_session.get(CallRequest, pending.id).status == RequestStatus.PENDING

    def test_a_page_form_without_its_token_tells_the_person_to_reload(self, script, db_session) -> None:  # type: ignore[no-untyped-def]
        seller = ProfileFactory().user
        response = script.post("/login", data={"email": seller.email, "password": PASSWORD})
        assert response.status_code == 400
        assert "reload the page" in response.get_data(as_text=True)
