"""The buyer's own controls (issue 19): cancel a pending request from the status page (the hold is
released at once), the join window said in the buyer's own time with what happens if missed, and
rating from the status page and from the end screen. The whole purchase runs through the app."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.db import utcnow
from app.models import CallRequest, CancelReason, OutboxEmail, Rating, RequestStatus
from app.services.calls import join_url
from tests.conftest import csrf_token, login
from tests.factories import ProfileFactory
from tests.functional.test_buyer_credential import accept, buy


@pytest.fixture(autouse=True)
def _fresh_limits(redis, settings):  # type: ignore[no-untyped-def]
    for key in redis.scan_iter(f"LIMITS:LIMITER/chatlink:{settings.celery_queue}:*"):
        redis.delete(key)


@pytest.fixture
def seller(db_session):  # type: ignore[no-untyped-def]
    return ProfileFactory(display_name="Ada Lovelace", slug="ada", price_cents=2500)


def the_request(db_session) -> CallRequest:  # type: ignore[no-untyped-def]
    db_session.expire_all()
    return db_session.scalars(select(CallRequest)).one()


def status_page(client, session_id: str) -> str:  # type: ignore[no-untyped-def]
    response = client.get(f"/success?session_id={session_id}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


class TestCancelWhilePending:
    def test_only_the_browser_that_paid_sees_and_can_use_the_cancel_button(
        self, app, db_session, seller, enqueued
    ) -> None:
        buyer = app.test_client()
        session_id = buy(app, buyer, enqueued)
        assert "Cancel my request" in status_page(buyer, session_id)
        stranger = app.test_client()
        assert "Cancel my request" not in status_page(stranger, session_id)
        refused = stranger.post(
            "/success/cancel",
            data={"session_id": session_id, "csrf_token": csrf_token(stranger)},
            follow_redirects=True,
        )
        assert "Only the browser you paid from can cancel" in refused.get_data(as_text=True)
        assert the_request(db_session).status is RequestStatus.PENDING

    def test_cancel_releases_the_hold_at_once_and_tells_both(self, app, db_session, seller, enqueued) -> None:
        buyer = app.test_client()
        session_id = buy(app, buyer, enqueued)
        enqueued.clear()
        response = buyer.post(
            "/success/cancel", data={"session_id": session_id, "csrf_token": csrf_token(buyer)}, follow_redirects=True
        )
        html = response.get_data(as_text=True)
        assert "Your request is cancelled and the hold on your card is released." in html
        assert 'data-status="cancelled"' in html and "You cancelled your request." in html
        call = the_request(db_session)
        assert (call.status, call.cancel_reason) == (RequestStatus.CANCELLED, CancelReason.BUYER_CANCELLED)
        assert "tasks.request_payments.release_hold" in enqueued.names()
        templates = set(db_session.scalars(select(OutboxEmail.template)))
        assert {"request_withdrawn_buyer", "request_withdrawn_seller"} <= templates
        # The seller can no longer take it.
        seller_client = app.test_client()
        login(seller_client, seller.user)
        taken = seller_client.post(
            f"/api/requests/{call.id}/accept", headers={"X-CSRFToken": csrf_token(seller_client)}
        )
        assert taken.status_code == 409 and taken.get_json()["error"]["code"] == "cancelled"

    def test_the_api_twin_and_a_second_cancel(self, app, db_session, seller, enqueued) -> None:
        buyer = app.test_client()
        session_id = buy(app, buyer, enqueued)
        first = buyer.post(
            "/api/requests/status/cancel", json={"sessionId": session_id}, headers={"X-CSRFToken": csrf_token(buyer)}
        )
        assert first.status_code == 200 and first.get_json() == {"cancelled": True}
        again = buyer.post(
            "/api/requests/status/cancel", json={"sessionId": session_id}, headers={"X-CSRFToken": csrf_token(buyer)}
        )
        assert again.status_code == 409 and again.get_json()["error"]["code"] == "not_pending"
        unknown = buyer.post(
            "/api/requests/status/cancel", json={"sessionId": "cs_nope"}, headers={"X-CSRFToken": csrf_token(buyer)}
        )
        assert unknown.status_code == 404

    def test_after_the_seller_accepted_it_is_too_late(self, app, db_session, seller, enqueued) -> None:
        buyer = app.test_client()
        session_id = buy(app, buyer, enqueued)
        seller_client = app.test_client()
        login(seller_client, seller.user)
        accept(seller_client, db_session)
        html = status_page(buyer, session_id)
        assert "Cancel my request" not in html
        late = buyer.post(
            "/api/requests/status/cancel", json={"sessionId": session_id}, headers={"X-CSRFToken": csrf_token(buyer)}
        )
        assert late.status_code == 409 and late.get_json()["error"]["code"] == "already_accepted"


class TestJoinWindow:
    def test_the_deadline_in_the_buyers_own_time_and_what_happens_if_missed(
        self, app, db_session, seller, enqueued
    ) -> None:
        buyer = app.test_client()
        session_id = buy(app, buyer, enqueued)
        seller_client = app.test_client()
        login(seller_client, seller.user)
        call = accept(seller_client, db_session)
        html = status_page(buyer, session_id)
        window = html[html.index('id="join-window"') :].split("</p>", 1)[0]
        deadline = call.join_deadline.strftime("%Y-%m-%dT%H:%M:%S")
        assert re.search(rf'<time datetime="{deadline}(\.\d+)?Z" data-local="datetime">', window)
        assert "UTC</time>" in window  # said in UTC until the browser puts it in the buyer's zone
        assert "your payment is kept" in window and "you get your money back" in window
        body = buyer.get(f"/api/requests/status?session_id={session_id}").get_json()
        assert body["joinDeadline"].endswith("Z") and body["canCancel"] is False


class TestRatingWhereTheBuyerIs:
    def finish(self, db_session, session_id: str) -> CallRequest:  # type: ignore[no-untyped-def]
        call = the_request(db_session)
        call.status, call.started_at, call.ends_at, call.ended_at = (
            RequestStatus.COMPLETED,
            utcnow(),
            utcnow(),
            utcnow(),
        )
        db_session.flush()
        return call

    def test_from_the_status_page_with_a_comment(self, app, db_session, seller, enqueued) -> None:
        buyer = app.test_client()
        session_id = buy(app, buyer, enqueued)
        seller_client = app.test_client()
        login(seller_client, seller.user)
        accept(seller_client, db_session)
        call = self.finish(db_session, session_id)
        html = status_page(buyer, session_id)
        action = re.search(r'<form method="post" action="([^"]+)" class="stack rate-form"', html).group(1)
        assert action.startswith(f"http://127.0.0.1:5000/rate/{call.id}?t=")
        assert "How was your call with Ada Lovelace?" not in status_page(app.test_client(), session_id)
        posted = buyer.post(
            action.replace("http://127.0.0.1:5000", ""),
            data={"stars": "4", "comment": "Very clear.", "csrf_token": csrf_token(buyer)},
        )
        assert posted.status_code == 201
        rating = db_session.scalars(select(Rating)).one()
        assert (rating.stars, rating.comment) == (4, "Very clear.")
        assert "You rated it 4 out of 5." in status_page(buyer, session_id)

    def test_from_the_end_screen_for_the_buyer_only(self, app, db_session, seller, enqueued) -> None:
        buyer = app.test_client()
        buy(app, buyer, enqueued)
        seller_client = app.test_client()
        login(seller_client, seller.user)
        accept(seller_client, db_session)
        call = self.finish(db_session, "")
        settings = app.extensions["settings"]
        links = {
            party: join_url(settings.app_url, settings.secret_key, call, party) or "" for party in ("buyer", "seller")
        }
        ended = buyer.get(links["buyer"].replace(settings.app_url, ""))
        assert ended.status_code == 410
        assert "How was your call with Ada Lovelace?" in ended.get_data(as_text=True)
        seller_end = seller_client.get(links["seller"].replace(settings.app_url, ""))
        assert "rate-form" not in seller_end.get_data(as_text=True)
