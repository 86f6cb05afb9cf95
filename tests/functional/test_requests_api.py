"""``GET /api/requests`` and ``POST /api/requests/<id>/accept|decline`` through the Flask client."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from app.db import utcnow
from app.models import CallRequest, CancelReason, OutboxEmail, RequestStatus
from tests.conftest import csrf_token, login
from tests.factories import CallRequestFactory, ProfileFactory

CAPTURE = "tasks.request_payments.capture_accepted"
RELEASE = "tasks.request_payments.release_hold"
KEYS = {
    "id",
    "status",
    "buyerEmail",
    "note",
    "grossCents",
    "netCents",
    "currency",
    "createdAt",
    "expiresAt",
    "acceptedAt",
    "startedAt",
    "endsAt",
    "endedAt",
    "cancelReason",
    "joinUrl",
    "proposedStarts",
    "scheduledStart",
    "joinOpensAt",
    "buyerTimeZone",
    "reschedule",
}


@pytest.fixture
def seller(db_session):  # type: ignore[no-untyped-def]
    return ProfileFactory(display_name="Ada").user


@pytest.fixture
def signed_in(client, seller):  # type: ignore[no-untyped-def]
    login(client, seller)
    return client


FETCH = object()


def decide(client, request_id, action: str, *, csrf: object = FETCH):  # type: ignore[no-untyped-def]
    """POST a decision with a real CSRF token, or with ``csrf`` (None: no header at all)."""
    headers = {}
    if csrf is FETCH:
        headers["X-CSRFToken"] = csrf_token(client)
    elif csrf is not None:
        headers["X-CSRFToken"] = str(csrf)
    return client.post(f"/api/requests/{request_id}/{action}", headers=headers)


def status_of(db_session, call_request: CallRequest) -> RequestStatus:  # type: ignore[no-untyped-def]
    db_session.expire_all()
    return db_session.get(CallRequest, call_request.id).status


class TestListing:
    def test_anonymous_is_refused(self, client) -> None:  # type: ignore[no-untyped-def]
        response = client.get("/api/requests")
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "unauthorized"

    def test_lists_only_the_sellers_own_requests(self, signed_in, seller, db_session) -> None:  # type: ignore[no-untyped-def]
        with freeze_time("2026-11-25 12:00:00"):
            mine = CallRequestFactory(transaction__seller=seller, note="Can we talk about <b>jazz</b>?")
        CallRequestFactory()  # someone else's

        response = signed_in.get("/api/requests")

        assert response.status_code == 200
        [item] = response.get_json()["requests"]
        assert set(item) == KEYS
        assert item["id"] == str(mine.id)
        assert item["status"] == "PENDING"
        assert item["buyerEmail"] == mine.buyer_email
        assert item["note"] == "Can we talk about <b>jazz</b>?"
        assert (item["grossCents"], item["netCents"]) == (1000, 800)
        assert item["createdAt"] == "2026-11-25T12:00:00Z"
        assert item["expiresAt"] == "2026-11-26T12:00:00Z"
        assert item["joinUrl"] is None and item["acceptedAt"] is None

    def test_status_filter(self, signed_in, seller) -> None:  # type: ignore[no-untyped-def]
        waiting = CallRequestFactory(transaction__seller=seller)
        CallRequestFactory(transaction__seller=seller, status=RequestStatus.DECLINED, declined_at=utcnow())

        for value in ("pending", "PENDING"):
            items = signed_in.get(f"/api/requests?status={value}").get_json()["requests"]
            assert [i["id"] for i in items] == [str(waiting.id)]
        assert len(signed_in.get("/api/requests?status=all").get_json()["requests"]) == 2
        assert signed_in.get("/api/requests?status=completed").get_json()["requests"] == []

    def test_unknown_status_is_422(self, signed_in) -> None:  # type: ignore[no-untyped-def]
        response = signed_in.get("/api/requests?status=paid")
        assert response.status_code == 422
        error = response.get_json()["error"]
        assert error["code"] == "invalid" and "status" in error["fields"]

    def test_cancel_reason_is_listed(self, signed_in, seller) -> None:  # type: ignore[no-untyped-def]
        CallRequestFactory(
            transaction__seller=seller,
            status=RequestStatus.CANCELLED,
            cancel_reason=CancelReason.EXPIRED,
            cancelled_at=utcnow(),
        )
        [item] = signed_in.get("/api/requests").get_json()["requests"]
        assert (item["status"], item["cancelReason"]) == ("CANCELLED", "expired")


class TestAccept:
    def test_accepts_and_publishes_the_capture(self, signed_in, seller, db_session, enqueued, settings) -> None:  # type: ignore[no-untyped-def]
        call_request = CallRequestFactory(transaction__seller=seller)

        response = decide(signed_in, call_request.id, "accept")

        assert response.status_code == 200, response.get_json()
        body = response.get_json()["request"]
        assert body["status"] == "ACCEPTED"
        assert body["acceptedAt"] is not None
        assert body["joinUrl"].startswith(f"{settings.app_url}/call/{call_request.id}?t=")
        assert status_of(db_session, call_request) is RequestStatus.ACCEPTED
        assert (CAPTURE, (str(call_request.id),), {}) in enqueued

    def test_the_listing_then_carries_the_sellers_join_link(self, signed_in, seller, settings) -> None:  # type: ignore[no-untyped-def]
        call_request = CallRequestFactory(transaction__seller=seller)
        link = decide(signed_in, call_request.id, "accept").get_json()["request"]["joinUrl"]

        [item] = signed_in.get("/api/requests?status=accepted").get_json()["requests"]
        assert item["joinUrl"] == link

    def test_second_accept_is_409_and_changes_nothing(self, signed_in, seller, db_session, enqueued) -> None:  # type: ignore[no-untyped-def]
        call_request = CallRequestFactory(transaction__seller=seller)
        decide(signed_in, call_request.id, "accept")
        db_session.expire_all()
        before = db_session.get(CallRequest, call_request.id)
        accepted_at, join_key = before.accepted_at, before.join_key

        response = decide(signed_in, call_request.id, "accept")

        assert response.status_code == 409
        assert response.get_json()["error"]["code"] == "already_accepted"
        db_session.expire_all()
        after = db_session.get(CallRequest, call_request.id)
        assert (after.accepted_at, after.join_key) == (accepted_at, join_key)
        assert enqueued.names().count(CAPTURE) == 1

    def test_expired_but_not_yet_swept_is_409(self, signed_in, seller, db_session) -> None:  # type: ignore[no-untyped-def]
        call_request = CallRequestFactory(transaction__seller=seller, expires_at=utcnow() - timedelta(seconds=1))

        response = decide(signed_in, call_request.id, "accept")

        assert response.status_code == 409
        assert response.get_json()["error"]["code"] == "expired"
        assert status_of(db_session, call_request) is RequestStatus.PENDING


class TestDecline:
    def test_declines_releases_and_tells_the_buyer(self, signed_in, seller, db_session, enqueued) -> None:  # type: ignore[no-untyped-def]
        call_request = CallRequestFactory(transaction__seller=seller)

        response = decide(signed_in, call_request.id, "decline")

        assert response.status_code == 200
        body = response.get_json()["request"]
        assert (body["status"], body["joinUrl"]) == ("DECLINED", None)
        assert status_of(db_session, call_request) is RequestStatus.DECLINED
        assert (RELEASE, (str(call_request.id),), {}) in enqueued
        [email] = db_session.scalars(select(OutboxEmail)).all()
        assert (email.template, email.recipient) == ("request_declined_buyer", call_request.buyer_email)

    def test_decline_after_accept_is_409(self, signed_in, seller, db_session) -> None:  # type: ignore[no-untyped-def]
        call_request = CallRequestFactory(transaction__seller=seller)
        decide(signed_in, call_request.id, "accept")

        response = decide(signed_in, call_request.id, "decline")

        assert response.status_code == 409
        assert status_of(db_session, call_request) is RequestStatus.ACCEPTED
        assert db_session.scalars(select(OutboxEmail)).all() == []


class TestAccessAndCsrf:
    @pytest.mark.parametrize("action", ["accept", "decline"])
    def test_another_sellers_request_is_404(self, signed_in, db_session, enqueued, action) -> None:  # type: ignore[no-untyped-def]
        theirs = CallRequestFactory()

        response = decide(signed_in, theirs.id, action)

        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "not_found"
        assert status_of(db_session, theirs) is RequestStatus.PENDING
        assert enqueued == []

    @pytest.mark.parametrize("path", [f"/api/requests/{uuid.uuid4()}/accept", "/api/requests/not-a-uuid/accept"])
    def test_unknown_ids_are_404(self, signed_in, path) -> None:  # type: ignore[no-untyped-def]
        response = signed_in.post(path, headers={"X-CSRFToken": csrf_token(signed_in)})
        assert response.status_code == 404

    @pytest.mark.parametrize("action", ["accept", "decline"])
    @pytest.mark.parametrize("token", [None, "forged-token"])
    def test_csrf_token_is_required(self, signed_in, seller, db_session, enqueued, action, token) -> None:  # type: ignore[no-untyped-def]
        call_request = CallRequestFactory(transaction__seller=seller)

        response = decide(signed_in, call_request.id, action, csrf=token)

        assert response.status_code == 400
        assert "error" in response.get_json()
        assert status_of(db_session, call_request) is RequestStatus.PENDING
        assert enqueued == []

    def test_anonymous_cannot_decide(self, client, db_session) -> None:  # type: ignore[no-untyped-def]
        call_request = CallRequestFactory()
        response = decide(client, call_request.id, "accept")
        assert response.status_code == 401
        assert status_of(db_session, call_request) is RequestStatus.PENDING
