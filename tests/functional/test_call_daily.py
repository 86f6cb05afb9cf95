"""A whole call on Daily, through the API, against a local fake Daily (``DAILY_API_BASE``): the
room made private for two, a token per party, the clock started by Daily's webhooks, the room's
exp moved to the end at the start, the room deleted at the end."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app.integrations.video import unix_seconds
from app.models import CallRequest, DailyEvent, RequestStatus
from app.services.calls import ROOM_GRACE_SECONDS, join_token
from tests.call_helpers import SECRET_KEY, accepted_call
from tests.fakes.daily_api import WEBHOOK_SECRET, FakeDaily


@pytest.fixture
def fake() -> Iterator[FakeDaily]:
    with FakeDaily(api_key="daily-test-key") as server:
        yield server


@pytest.fixture
def daily_app(db_session, make_app, settings, fake):  # type: ignore[no-untyped-def]
    # db_session first: make_app restores the database binding it finds when it starts.
    return make_app(
        settings.replace(daily_api_key="daily-test-key", daily_api_base=fake.url, daily_webhook_secret=WEBHOOK_SECRET)
    )


def daily_says_both_joined(client, fake, call, session) -> None:  # type: ignore[no-untyped-def]
    """Daily's participant.joined for both, delivered and processed as the worker would."""
    from tasks.daily_events import process_daily_event

    for party in ("buyer", "seller"):
        body, headers = fake.signed(fake.joined(call.room_name, party, f"s-{party}", time.time()))
        assert client.post("/api/webhooks/daily", data=body, headers=headers).status_code == 200
    for row_id in session.scalars(select(DailyEvent.id).order_by(DailyEvent.received_at)):
        assert process_daily_event.apply(args=(str(row_id),)).get() == "processed"


@pytest.fixture
def daily_client(daily_app):  # type: ignore[no-untyped-def]
    return daily_app.test_client()


def post(client, path, call, party, **body):  # type: ignore[no-untyped-def]
    payload = {"requestId": str(call.id), "token": join_token(SECRET_KEY, call, party), "clientId": f"{party}-window-1"}
    return client.post(f"/api/video/{path}", json={**payload, **body})


def test_a_whole_call_on_daily(daily_client, daily_app, db_session, fake) -> None:
    from tasks.call_endings import end_call
    from tasks.call_presence import start_room

    call = accepted_call(room=None, seller_name="Grace Hopper")

    created = post(daily_client, "create", call, "buyer").get_json()
    db_session.refresh(call)
    room = fake.rooms[call.room_name]
    assert created["provider"] == "daily" and created["roomUrl"] == room["url"]
    assert room["privacy"] == "private"
    assert room["config"]["max_participants"] == 2
    assert room["config"]["eject_at_room_exp"] is True
    assert room["config"]["exp"] == math.ceil(
        (call.join_deadline + timedelta(seconds=300 + ROOM_GRACE_SECONDS)).timestamp()
    )

    tokens = {}
    for party in ("seller", "buyer"):
        joined = post(daily_client, "join", call, party).get_json()
        assert joined["provider"] == "daily" and joined["roomUrl"] == room["url"]
        tokens[party] = fake.tokens[joined["token"]]
    assert tokens["seller"] == {
        "room_name": call.room_name,
        "user_name": "Grace Hopper",
        "user_id": "seller",
        "is_owner": True,
        "exp": room["config"]["exp"],
    }
    assert tokens["buyer"]["is_owner"] is False and tokens["buyer"]["user_name"] == "Buyer"

    for party in ("buyer", "seller"):
        post(daily_client, "presence", call, party, state="connected")  # the pages' word: a hint
    db_session.refresh(call)
    assert call.started_at is None
    with daily_app.app_context():
        daily_says_both_joined(daily_client, fake, call, db_session)
        db_session.refresh(call)
        assert call.started_at is not None
        # At the start, Daily is told to eject both at the call's end (a task, in the worker).
        assert start_room.apply(args=(str(call.id),)).get() == "moved"
    [moved] = fake.calls("POST", f"/v1/rooms/{call.room_name}")
    assert moved.json == {"properties": {"exp": unix_seconds(call.ends_at), "eject_at_room_exp": True}}
    assert fake.rooms[call.room_name]["config"]["exp"] == unix_seconds(call.ends_at)

    # The five minutes pass; the ETA task ends the call and deletes the room.
    db_session.execute(
        update(CallRequest)
        .where(CallRequest.id == call.id)
        .values(
            started_at=CallRequest.started_at - timedelta(seconds=300),
            ends_at=CallRequest.ends_at - timedelta(seconds=300),
        )
    )
    with daily_app.app_context():
        assert end_call(str(call.id)) == "ended"
    db_session.refresh(call)
    assert call.status == RequestStatus.COMPLETED
    assert call.room_name not in fake.rooms
    assert call.room_deleted_at is not None
    assert len(fake.calls("DELETE")) == 1


def test_the_page_embeds_daily_prebuilt(daily_client, db_session) -> None:
    call = accepted_call(room="daily", room_url="https://chatlink-test.daily.co/cl-room")
    response = daily_client.get(f"/call/{call.id}?t={join_token(SECRET_KEY, call, 'buyer')}")

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'data-provider="daily"' in html and 'id="daily-frame"' in html
    assert "/static/vendor/daily-js-0.87.0/daily-iframe.js" in html and "/static/js/daily-room.js" in html
    assert "frame-src https://*.daily.co" in response.headers["Content-Security-Policy"]
    # The iframe from the room's origin may use the camera and microphone; nobody else may.
    policy = response.headers["Permissions-Policy"]
    assert 'camera=(self "https://chatlink-test.daily.co")' in policy
    assert 'microphone=(self "https://chatlink-test.daily.co")' in policy and "geolocation=()" in policy
    vendored = daily_client.get("/static/vendor/daily-js-0.87.0/daily-iframe.js")
    assert vendored.status_code == 200
    vendored.close()


def test_a_daily_outage_at_join_is_a_retryable_conflict(daily_client, db_session, fake) -> None:
    call = accepted_call(room="daily")
    fake.fail_next(503, 503)  # the web's adapter tries twice, then the page retries
    response = post(daily_client, "join", call, "buyer")
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "room_not_ready"


def test_when_daily_misses_the_start_the_task_moves_the_rooms_exp(daily_app, db_session, fake, enqueued) -> None:
    """The start publishes ``tasks.call_presence.start_room``; when Daily does not answer, the task
    retries until it does, so Daily still ejects both on time."""
    from tasks.call_presence import start_room

    call = accepted_call(room=None)
    client = daily_app.test_client()
    post(client, "create", call, "buyer")
    db_session.refresh(call)
    with daily_app.app_context():
        daily_says_both_joined(client, fake, call, db_session)
    db_session.commit()
    db_session.refresh(call)
    assert call.ends_at is not None
    assert (start_room.name, (str(call.id),), {}) in enqueued

    # Daily is down for a while: the adapter retries, then the task retries (with the same work).
    fake.fail_next(503, 503, 503, 503, 503)
    with daily_app.app_context():
        assert start_room.apply(args=(str(call.id),)).get() == "moved"
    assert fake.rooms[call.room_name]["config"]["exp"] == unix_seconds(call.ends_at)
    assert fake.rooms[call.room_name]["config"]["eject_at_room_exp"] is True
    assert len(fake.calls("POST", f"/v1/rooms/{call.room_name}")) == 6
