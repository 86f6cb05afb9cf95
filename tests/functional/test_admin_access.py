"""Every admin page and endpoint is for admins only: anonymous visitors are sent to log in (401
on the API), sellers get 403, and nothing changes when they try."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from app.models import EventLog, Report, ReporterRole, ReportStatus, User
from tests.conftest import csrf_token, login
from tests.factories import AdminFactory, ProfileFactory
from tests.functional.test_profile_page import assert_no_inline_code
from tests.trust_support import finished_call, fresh_rate_limits  # noqa: F401 (fresh_rate_limits is autouse)

ID = str(uuid.uuid4())
PAGES = [
    "/admin",
    "/admin/reports",
    "/admin/reports?status=all",
    "/admin/sellers",
    "/admin/disputes",
    "/admin/events",
    "/admin/summary",
    "/admin/erase",
]
PAGE_POSTS = [
    f"/admin/reports/{ID}/resolve",
    f"/admin/sellers/{ID}/suspend",
    f"/admin/sellers/{ID}/unsuspend",
    "/admin/erase",
]
API_POSTS = [
    f"/api/admin/reports/{ID}/resolve",
    f"/api/admin/sellers/{ID}/suspend",
    f"/api/admin/sellers/{ID}/unsuspend",
    "/api/admin/erase",
]


@pytest.mark.parametrize("path", PAGES)
def test_pages_send_anonymous_visitors_to_log_in(client, db_session, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


@pytest.mark.parametrize("path", [*PAGES, "/api/admin/reports"])
def test_sellers_get_403(client, db_session, path: str) -> None:
    login(client, ProfileFactory().user)
    assert client.get(path).status_code == 403


@pytest.mark.parametrize("path", PAGES)
def test_admins_get_the_page(client, db_session, path: str) -> None:
    login(client, AdminFactory())
    response = client.get(path)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'aria-label="Admin"' in html and response.headers["Cache-Control"] == "no-store"
    assert_no_inline_code(html)


@pytest.mark.parametrize("path", PAGE_POSTS + API_POSTS)
def test_a_seller_cannot_act(client, db_session, path: str) -> None:
    seller = ProfileFactory().user
    login(client, seller)
    token = csrf_token(client)
    response = client.post(
        path, data={"csrf_token": token, "note": "x", "email": "a@example.org"}, headers={"X-CSRFToken": token}
    )
    assert response.status_code == 403
    if path.startswith("/api/"):
        assert response.get_json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("path", [*API_POSTS, "/api/admin/reports"])
def test_the_api_answers_401_to_anonymous_callers(client, db_session, path: str) -> None:
    token = csrf_token(client)
    response = client.post(path, json={}, headers={"X-CSRFToken": token}) if path in API_POSTS else client.get(path)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


def test_a_refused_seller_changes_nothing(client, db_session) -> None:
    target = ProfileFactory().user
    report_call = finished_call()
    report = Report(
        seller_id=report_call.seller_id,
        call_request_id=report_call.id,
        buyer_email=report_call.buyer_email,
        reporter_role=ReporterRole.BUYER,
        reason="spam",
    )
    db_session.add(report)
    db_session.flush()
    login(client, ProfileFactory().user)
    headers = {"X-CSRFToken": csrf_token(client)}

    client.post(f"/api/admin/sellers/{target.id}/suspend", json={}, headers=headers)
    client.post(f"/api/admin/reports/{report.id}/resolve", json={"note": "mine"}, headers=headers)
    client.post("/api/admin/erase", json={"email": report_call.buyer_email}, headers=headers)

    db_session.expire_all()
    assert db_session.get(User, target.id).suspended_at is None
    assert db_session.get(Report, report.id).status == ReportStatus.OPEN
    assert db_session.scalars(select(EventLog).where(EventLog.type.like("admin.%"))).all() == []


def test_an_admin_lands_on_the_admin_area_after_log_in(client, db_session) -> None:
    import re

    from tests.factories import PASSWORD, AdminFactory

    admin = AdminFactory()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"', page)
    response = client.post(
        "/login", data={"email": admin.email, "password": PASSWORD, "csrf_token": token.group(1) or token.group(2)}
    )
    assert response.status_code == 303 and response.headers["Location"] == "/admin"
