"""Reports from both sides and the buyer's rating, through the Flask client: the buyer's pages
open with their call token and no login; the seller's need a login."""

from __future__ import annotations

from sqlalchemy import func, select

from app.models import Rating, Report, ReporterRole, RequestStatus, User
from tests.conftest import csrf_token, login
from tests.factories import ProfileFactory
from tests.functional.test_profile_page import assert_no_inline_code
from tests.trust_support import buyer_token, finished_call, fresh_rate_limits, page_csrf, seller_token  # noqa: F401 (fresh_rate_limits is autouse)


def _seller(session, call) -> User:  # type: ignore[no-untyped-def]
    return session.get(User, call.seller_id)


def count(session, model) -> int:  # type: ignore[no-untyped-def]
    return session.scalar(select(func.count()).select_from(model))


class TestRatePage:
    def test_the_buyer_rates_once_from_the_email_link(self, client, db_session) -> None:
        call = finished_call(seller=ProfileFactory(display_name="Grace Hopper").user)
        url = f"/rate/{call.id}?t={buyer_token(call)}"

        page = client.get(url)
        html = page.get_data(as_text=True)
        assert page.status_code == 200 and "How was your call with Grace Hopper?" in html
        assert page.headers["Cache-Control"] == "no-store" and 'name="robots" content="noindex"' in html
        assert_no_inline_code(html)
        assert f'href="/report/{call.id}?t={buyer_token(call)}"' in html

        saved = client.post(url, data={"csrf_token": page_csrf(html), "stars": "4"})
        assert saved.status_code == 201 and "You rated your call with Grace Hopper 4 out of 5." in saved.get_data(
            as_text=True
        )
        assert db_session.scalars(select(Rating.stars)).all() == [4]

        again = client.post(url, data={"csrf_token": page_csrf(html), "stars": "1"})
        # The second answer is a 409 that still shows the rating given first.
        assert again.status_code == 409 and "4 out of 5" in again.get_data(as_text=True)
        assert db_session.scalars(select(Rating.stars)).all() == [4]

    def test_a_wrong_or_missing_token_is_a_404(self, client, db_session) -> None:
        call = finished_call()
        assert client.get(f"/rate/{call.id}").status_code == 404
        assert client.get(f"/rate/{call.id}?t=guess").status_code == 404
        assert client.get(f"/rate/{call.id}?t={seller_token(call)}").status_code == 404  # the seller cannot rate
        other = finished_call()
        assert client.get(f"/rate/{other.id}?t={buyer_token(call)}").status_code == 404

    def test_stars_are_required(self, client, db_session) -> None:
        call = finished_call()
        url = f"/rate/{call.id}?t={buyer_token(call)}"
        response = client.post(url, data={"csrf_token": page_csrf(client.get(url).get_data(as_text=True))})
        assert response.status_code == 422 and "Choose from 1 to 5 stars." in response.get_data(as_text=True)
        assert count(db_session, Rating) == 0

    def test_a_call_that_did_not_happen_cannot_be_rated(self, client, db_session) -> None:
        call = finished_call(status=RequestStatus.ACCEPTED)
        html = client.get(f"/rate/{call.id}?t={buyer_token(call)}").get_data(as_text=True)
        assert 'id="not-rateable"' in html
        assert "/report/" not in html  # nothing to report before the call is over

    def test_json_api(self, client, db_session) -> None:
        call = finished_call()
        url = f"/api/calls/{call.id}/rating"
        bad_token = client.post(url, json={"token": "guess", "stars": 5})
        assert bad_token.status_code == 404
        bad_stars = client.post(url, json={"token": buyer_token(call), "stars": 9})
        assert bad_stars.status_code == 422 and bad_stars.get_json()["error"]["code"] == "invalid"
        created = client.post(url, json={"token": buyer_token(call), "stars": 5})
        assert created.status_code == 201 and created.get_json()["rating"]["stars"] == 5
        again = client.post(url, json={"token": buyer_token(call), "stars": 5})
        assert (again.status_code, again.get_json()["error"]["code"]) == (409, "already_rated")


class TestBuyerReport:
    def test_the_buyer_reports_the_seller_without_logging_in(self, client, db_session) -> None:
        call = finished_call()
        url = f"/report/{call.id}?t={buyer_token(call)}"
        html = client.get(url).get_data(as_text=True)
        assert 'value="harassment"' in html and 'maxlength="2000"' in html
        assert_no_inline_code(html)

        filed = client.post(url, data={"csrf_token": page_csrf(html), "reason": "harassment", "text": "Shouted."})
        assert filed.status_code == 201 and 'id="report-filed"' in filed.get_data(as_text=True)
        report = db_session.scalar(select(Report))
        assert (report.reporter_role, report.reason, report.text) == (ReporterRole.BUYER, "harassment", "Shouted.")
        # Coming back shows the thank-you, not a second form.
        assert 'id="report-filed"' in client.get(url).get_data(as_text=True)
        again = client.post(url, data={"csrf_token": page_csrf(html), "reason": "spam"})
        assert again.status_code == 409 and count(db_session, Report) == 1

    def test_validation_and_token(self, client, db_session) -> None:
        call = finished_call()
        url = f"/report/{call.id}?t={buyer_token(call)}"
        token = page_csrf(client.get(url).get_data(as_text=True))
        assert client.post(url, data={"csrf_token": token, "reason": "made-up"}).status_code == 422
        assert client.post(url, data={"csrf_token": token, "reason": "spam", "text": "x" * 2001}).status_code == 422
        assert client.get(f"/report/{call.id}?t=nope").status_code == 404
        assert count(db_session, Report) == 0

    def test_json_api(self, client, db_session) -> None:
        call = finished_call(status=RequestStatus.CANCELLED)  # a buyer no-show can be reported too
        url = f"/api/calls/{call.id}/report"
        created = client.post(url, json={"token": buyer_token(call), "reason": "no_show", "text": ""})
        assert created.status_code == 201
        body = created.get_json()["report"]
        assert set(body) == {"id", "status", "reason", "createdAt"} and body["reason"] == "no_show"
        again = client.post(url, json={"token": buyer_token(call), "reason": "spam"})
        assert (again.status_code, again.get_json()["error"]["code"]) == (409, "already_reported")
        bad = client.post(url, json={"token": buyer_token(call), "reason": "x"})
        assert bad.status_code in (409, 422)
        assert client.post(url, json={"token": "nope", "reason": "spam"}).status_code == 404


class TestSellerReport:
    def test_the_seller_reports_the_buyer_when_logged_in(self, client, db_session) -> None:
        call = finished_call(buyer_email="rude@example.org")
        url = f"/requests/{call.id}/report"
        assert client.get(url).status_code == 302  # to the log-in page

        login(client, _seller(db_session, call))
        html = client.get(url).get_data(as_text=True)
        assert "rude@example.org" in html
        filed = client.post(url, data={"csrf_token": page_csrf(html), "reason": "spam", "text": "Ads."})
        assert filed.status_code == 201
        assert db_session.scalar(select(Report.reporter_role)) == ReporterRole.SELLER

    def test_another_sellers_call_is_a_404(self, client, db_session) -> None:
        call = finished_call()
        login(client, ProfileFactory().user)
        assert client.get(f"/requests/{call.id}/report").status_code == 404
        api = client.post(
            f"/api/requests/{call.id}/report", json={"reason": "spam"}, headers={"X-CSRFToken": csrf_token(client)}
        )
        assert api.status_code == 404 and count(db_session, Report) == 0

    def test_json_api_and_a_call_not_over_yet(self, client, db_session) -> None:
        finished = finished_call()
        ongoing = finished_call(seller=_seller(db_session, finished), status=RequestStatus.ACCEPTED)
        login(client, _seller(db_session, finished))
        headers = {"X-CSRFToken": csrf_token(client)}
        created = client.post(f"/api/requests/{finished.id}/report", json={"reason": "other"}, headers=headers)
        assert created.status_code == 201
        early = client.post(f"/api/requests/{ongoing.id}/report", json={"reason": "other"}, headers=headers)
        assert (early.status_code, early.get_json()["error"]["code"]) == (409, "not_reportable")

    def test_the_reported_seller_never_learns_who_reported_them(self, client, db_session) -> None:
        call = finished_call(buyer_email="reporter@example.org")
        client.post(
            f"/api/calls/{call.id}/report",
            json={"token": buyer_token(call), "reason": "harassment", "text": "A very specific complaint"},
        )
        assert count(db_session, Report) == 1
        login(client, _seller(db_session, call))
        for path in ("/requests", "/dashboard", "/account/export.json", f"/requests/{call.id}/report"):
            body = client.get(path).get_data(as_text=True)
            assert "A very specific complaint" not in body, path
            assert "harassment" not in body.lower() or path.endswith("/report"), path  # the form lists categories
        export = client.get("/account/export.json").get_json()
        assert export["reportsFiled"] == []
