"""The live pages' long-polls through the Flask client: who may wait on what, what a change made by
the seller or by the payment does to the other party's waiting page, and the refusals."""

from __future__ import annotations

import re
import time

import pytest

from tests.conftest import csrf_token, login
from tests.factories import CallRequestFactory, ProfileFactory, TransactionFactory
from tests.functional.test_buyer_credential import buy


@pytest.fixture(autouse=True)
def _fresh_limits(redis, settings):  # type: ignore[no-untyped-def]
    for key in redis.scan_iter(f"LIMITS:LIMITER/chatlink:{settings.celery_queue}:*"):
        redis.delete(key)


@pytest.fixture
def seller(db_session):  # type: ignore[no-untyped-def]
    return ProfileFactory(display_name="Ada Lovelace", slug="ada", price_cents=2500)


def page_version(html: str) -> int:
    return int(re.search(r'data-live-version="(\d+)"', html).group(1))


class TestSellerChannel:
    def test_needs_a_session(self, client) -> None:
        response = client.get("/api/live/seller")
        assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"

    def test_a_bad_since_is_refused(self, client, db_session) -> None:
        login(client, ProfileFactory().user)
        for since in ("-1", "x", "²", "9" * 19):
            assert client.get(f"/api/live/seller?since={since}").status_code == 422, since

    def test_nothing_new_answers_after_the_wait(self, app, client, db_session) -> None:
        login(client, ProfileFactory().user)
        version = page_version(client.get("/dashboard").get_data(as_text=True))
        started = time.monotonic()
        answer = client.get(f"/api/live/seller?since={version}")
        assert answer.get_json() == {"version": version, "changed": False}
        assert answer.headers["Cache-Control"] == "no-store"
        assert time.monotonic() - started >= app.extensions["settings"].live_wait_seconds * 0.9

    def test_a_decline_moves_the_sellers_pages_on(self, client, db_session) -> None:
        profile = ProfileFactory()
        call = CallRequestFactory(transaction=TransactionFactory(seller=profile.user))
        login(client, profile.user)
        version = page_version(client.get("/requests").get_data(as_text=True))
        declined = client.post(f"/api/requests/{call.id}/decline", headers={"X-CSRFToken": csrf_token(client)})
        assert declined.status_code == 200
        started = time.monotonic()
        answer = client.get(f"/api/live/seller?since={version}").get_json()
        assert answer == {"version": version + 1, "changed": True}
        assert time.monotonic() - started < 0.5
        assert page_version(client.get("/dashboard").get_data(as_text=True)) == version + 1


class TestBuyerChannel:
    def test_needs_a_session_id(self, client) -> None:
        response = client.get("/api/live/checkout")
        assert response.status_code == 422

    def test_the_paid_request_and_the_sellers_answer_reach_the_buyers_page(
        self, app, db_session, seller, enqueued
    ) -> None:
        buyer = app.test_client()
        session_id = buy(app, buyer, enqueued)
        html = buyer.get(f"/success?session_id={session_id}").get_data(as_text=True)
        version = page_version(html)
        assert version >= 1  # the webhook's new request was announced on this checkout's channel
        seller_client = app.test_client()
        login(seller_client, seller.user)
        (pending,) = seller_client.get("/api/requests?status=pending").get_json()["requests"]
        seller_client.post(f"/api/requests/{pending['id']}/accept", headers={"X-CSRFToken": csrf_token(seller_client)})
        answer = buyer.get(f"/api/live/checkout?session_id={session_id}&since={version}").get_json()
        assert answer["changed"] is True and answer["version"] > version
        assert 'data-status="accepted"' in buyer.get(f"/success?session_id={session_id}").get_data(as_text=True)


def test_the_bound_turns_a_long_poll_into_a_short_one(app, client, db_session, monkeypatch) -> None:
    from app import live

    monkeypatch.setattr(live.feed(), "_slots", __import__("threading").BoundedSemaphore(1))
    live.feed()._slots.acquire()  # another page of this process holds the only slot
    login(client, ProfileFactory().user)
    answer = client.get("/api/live/seller?since=0")
    assert answer.get_json()["retryAfter"] == live.BUSY_RETRY_SECONDS
