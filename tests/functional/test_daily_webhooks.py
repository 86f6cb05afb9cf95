"""Daily decides who is in a Daily room: ``POST /api/webhooks/daily`` (signed as Daily signs, stored in
an inbox, processed after commit) and, without a webhook secret, Daily's presence polled by the worker.
Against tests/fakes/daily_api.py, which builds and signs events like Daily."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.db import utcnow
from app.integrations.video import DailyVideo
from app.models import CallRequest, DailyEvent, DailyEventStatus, PresenceInterval, RequestStatus
from app.services import call_endings, daily_events
from app.services.calls import CallConfig, join_token
from tests.call_helpers import SECRET_KEY, accepted_call
from tests.fakes.daily_api import WEBHOOK_SECRET, FakeDaily, event

URL = "/api/webhooks/daily"
PROCESS = "tasks.daily_events.process_daily_event"


@pytest.fixture
def fake() -> Iterator[FakeDaily]:
    with FakeDaily(api_key="daily-test-key") as server:
        yield server


@pytest.fixture
def daily_app(db_session, make_app, settings, fake):  # type: ignore[no-untyped-def]
    return make_app(
        settings.replace(daily_api_key="daily-test-key", daily_api_base=fake.url, daily_webhook_secret=WEBHOOK_SECRET)
    )


@pytest.fixture
def client(daily_app):  # type: ignore[no-untyped-def]
    return daily_app.test_client()


@pytest.fixture
def call(db_session):  # type: ignore[no-untyped-def]
    return accepted_call(room="daily", room_url="https://chatlink-test.daily.co/room")


def deliver(client, fake, evt, **options):  # type: ignore[no-untyped-def]
    body, headers = fake.signed(evt, **options)
    return client.post(URL, data=body, headers=headers)


def process_all(session, enqueued, *, now=None) -> list:  # type: ignore[no-untyped-def]
    """Run what the webhook published, as the worker would, in order."""
    outcomes = [
        daily_events.process_event(session, uuid.UUID(args[0]), duration_seconds=300, now=now or utcnow())
        for name, args, _ in enqueued
        if name == PROCESS
    ]
    enqueued[:] = [item for item in enqueued if item[0] != PROCESS]
    return outcomes


def stored(session) -> int:  # type: ignore[no-untyped-def]
    return session.scalar(select(func.count()).select_from(DailyEvent))


def ts(moment: datetime) -> float:
    return moment.timestamp()


class TestSignature:
    def test_a_signed_event_is_stored_and_processed_after_commit(
        self, client, fake, call, db_session, enqueued
    ) -> None:
        response = deliver(client, fake, fake.joined(call.room_name, "buyer", "s-1", time.time()))
        assert (response.status_code, response.get_json()) == (200, {"received": True})
        [row] = db_session.scalars(select(DailyEvent))
        assert (row.type, row.status) == ("participant.joined", DailyEventStatus.RECEIVED)
        assert [(name, args) for name, args, _ in enqueued] == [(PROCESS, (str(row.id),))]

    @pytest.mark.parametrize(
        "case",
        ["tampered", "stale", "future", "missing_signature", "missing_timestamp", "wrong_secret", "not_base64"],
    )
    def test_anything_daily_did_not_sign_is_refused(self, client, fake, call, db_session, enqueued, case) -> None:
        evt = fake.joined(call.room_name, "buyer", "s-1", time.time())
        body, headers = fake.signed(evt)
        if case == "tampered":
            body = body.replace(b'"buyer"', b'"seller"')
        elif case in ("stale", "future"):
            shift = -301 if case == "stale" else 301
            body, headers = fake.signed(evt, timestamp=int(time.time()) + shift)
        elif case == "missing_signature":
            del headers["X-Webhook-Signature"]
        elif case == "missing_timestamp":
            del headers["X-Webhook-Timestamp"]
        elif case == "wrong_secret":
            body, headers = fake.signed(evt, secret="b3RoZXItc2VjcmV0LW9mLWFub3RoZXItd2ViaG9vaw==")
        else:
            headers["X-Webhook-Signature"] = "not base64 at all"
        response = client.post(URL, data=body, headers=headers)
        assert response.status_code == 400
        assert response.get_json()["error"]["code"] == "invalid_signature"
        assert stored(db_session) == 0 and enqueued == []

    def test_a_timestamp_in_milliseconds_is_read_too(self, client, fake, call, db_session) -> None:
        evt = fake.joined(call.room_name, "buyer", "s-1", time.time())
        assert deliver(client, fake, evt, timestamp=int(time.time() * 1000)).status_code == 200
        assert stored(db_session) == 1

    def test_dailys_check_of_a_new_webhook_is_answered_and_nothing_is_stored(self, client, db_session) -> None:
        response = client.post(URL, data=b'{"test":"test"}', headers={"Content-Type": "application/json"})
        assert response.status_code == 200
        assert stored(db_session) == 0

    def test_without_a_secret_the_endpoint_does_not_exist(self, db_session, make_app, settings, fake, call) -> None:
        app = make_app(settings.replace(daily_api_key="daily-test-key", daily_api_base=fake.url))
        body, headers = fake.signed(fake.joined(call.room_name, "buyer", "s-1", time.time()))
        assert app.test_client().post(URL, data=body, headers=headers).status_code == 404
        assert stored(db_session) == 0

    def test_a_redelivery_is_stored_and_published_once(self, client, fake, call, db_session, enqueued) -> None:
        evt = fake.joined(call.room_name, "buyer", "s-1", time.time())
        assert deliver(client, fake, evt).status_code == 200
        assert deliver(client, fake, evt).status_code == 200  # Daily retries: a new signature, the same id
        assert stored(db_session) == 1
        assert [name for name, _, _ in enqueued] == [PROCESS]


class TestPresenceFromDaily:
    def test_both_in_the_room_start_the_clock_when_the_second_joined(
        self, client, fake, call, db_session, enqueued
    ) -> None:
        buyer_in = utcnow() - timedelta(seconds=20)
        seller_in = utcnow() - timedelta(seconds=5)
        deliver(client, fake, fake.joined(call.room_name, "buyer", "s-buyer", ts(buyer_in)))
        assert process_all(db_session, enqueued) == [DailyEventStatus.PROCESSED]
        db_session.refresh(call)
        assert (call.started_at, call.buyer_joined_at) == (None, buyer_in)

        deliver(client, fake, fake.joined(call.room_name, "seller", "s-seller", ts(seller_in)))
        process_all(db_session, enqueued)
        db_session.commit()
        db_session.refresh(call)
        assert call.started_at == seller_in
        assert call.ends_at == seller_in + timedelta(seconds=300)
        # Daily is told to eject both at the end, by a task (this runs in a worker).
        assert ("tasks.call_presence.start_room", (str(call.id),), {}) in enqueued

    def test_a_page_claiming_presence_daily_does_not_confirm_starts_nothing(
        self, client, fake, call, db_session, enqueued
    ) -> None:
        for party in ("buyer", "seller"):
            payload = {
                "requestId": str(call.id),
                "token": join_token(SECRET_KEY, call, party),
                "clientId": f"{party}-w-1",
            }
            response = client.post("/api/video/presence", json=payload | {"state": "connected"})
            assert response.status_code == 200
        # Daily has seen only the buyer.
        deliver(client, fake, fake.joined(call.room_name, "buyer", "s-buyer", time.time()))
        process_all(db_session, enqueued)
        db_session.refresh(call)
        assert call.started_at is None
        assert call.seller_joined_at is None  # the seller's page said so; Daily did not
        assert db_session.scalars(select(PresenceInterval.party)).all() == ["buyer"]

    def test_duplicates_and_any_order_end_the_same(self, client, fake, call, db_session, enqueued) -> None:
        t0 = utcnow() - timedelta(seconds=120)
        buyer_joined = fake.joined(call.room_name, "buyer", "s-buyer", ts(t0))
        buyer_left = fake.left(call.room_name, "buyer", "s-buyer", ts(t0), duration=90)
        seller_joined = fake.joined(call.room_name, "seller", "s-seller", ts(t0 + timedelta(seconds=30)))
        # Delivered late, out of order, and twice.
        for evt in (buyer_left, seller_joined, buyer_left, buyer_joined, seller_joined):
            deliver(client, fake, evt)
        process_all(db_session, enqueued)

        db_session.refresh(call)
        assert call.started_at == t0 + timedelta(seconds=30)  # when both were first in
        rows = {row.party: row for row in db_session.scalars(select(PresenceInterval))}
        assert (rows["buyer"].started_at, rows["buyer"].ended_at) == (t0, t0 + timedelta(seconds=90))
        assert rows["seller"].ended_at is None
        assert stored(db_session) == 3

    def test_rooms_and_people_that_are_not_ours_are_ignored(self, client, fake, call, db_session, enqueued) -> None:
        deliver(client, fake, fake.joined("someone-elses-room", "buyer", "s-1", time.time()))
        deliver(client, fake, fake.joined(call.room_name, "recording-bot", "s-2", time.time()))
        deliver(client, fake, event("recording.started", {"room": call.room_name}))
        assert process_all(db_session, enqueued) == [DailyEventStatus.IGNORED] * 3
        assert db_session.scalar(select(func.count()).select_from(PresenceInterval)) == 0

    def test_a_seller_who_ends_early_is_settled_by_dailys_connected_time(
        self, client, fake, call, db_session, enqueued, settings
    ) -> None:
        start = utcnow() - timedelta(seconds=200)
        deliver(client, fake, fake.joined(call.room_name, "buyer", "s-buyer", ts(start)))
        deliver(client, fake, fake.joined(call.room_name, "seller", "s-seller", ts(start)))
        # The buyer drops out for 30 s in the middle.
        deliver(client, fake, fake.left(call.room_name, "buyer", "s-buyer", ts(start), duration=60))
        deliver(client, fake, fake.joined(call.room_name, "buyer", "s-buyer-2", ts(start + timedelta(seconds=90))))
        process_all(db_session, enqueued)
        end = start + timedelta(seconds=150)
        config = CallConfig.from_settings(settings)
        assert call_endings.end_call(db_session, call.id, ended_by="seller", config=config, now=end) == "ended"

        db_session.refresh(call)
        settled = call.settlement
        assert settled.connected_seconds == 120  # 150 s since the start, 30 s of them without the buyer
        assert (settled.refund_cents, settled.fee_cents, settled.net_cents) == (600, 80, 320)

    def test_the_meeting_ending_closes_what_is_still_open(self, client, fake, call, db_session, enqueued) -> None:
        start = utcnow() - timedelta(seconds=100)
        deliver(client, fake, fake.joined(call.room_name, "buyer", "s-buyer", ts(start)))
        deliver(client, fake, fake.meeting_ended(call.room_name, ts(start), ts(start + timedelta(seconds=40))))
        process_all(db_session, enqueued)
        [row] = db_session.scalars(select(PresenceInterval))
        assert row.ended_at == start + timedelta(seconds=40)

    def test_the_sweep_publishes_an_event_a_lost_message_left(
        self, client, fake, call, db_session, enqueued, settings
    ) -> None:
        deliver(client, fake, fake.joined(call.room_name, "buyer", "s-1", time.time()))
        enqueued.clear()  # the broker lost it
        later = utcnow() + timedelta(seconds=61)
        assert daily_events.requeue_stuck_events(db_session, later, settings)["daily_inbox_requeued"] == 1
        db_session.commit()
        assert [name for name, _, _ in enqueued] == [PROCESS]


class TestPollingWithoutWebhooks:
    def test_dailys_presence_stands_in_for_the_webhooks(self, db_session, fake, call) -> None:
        provider = DailyVideo("daily-test-key", fake.url)
        joined = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
        stamp = joined.isoformat().replace("+00:00", ".000Z")
        fake.present[call.room_name] = [
            {"id": "p-buyer", "userId": "buyer", "userName": "Buyer", "joinTime": stamp},
            {"id": "p-seller", "userId": "seller", "userName": "Ada", "joinTime": stamp},
            {"id": "p-other", "userId": None, "userName": "Someone", "joinTime": stamp},
        ]
        fake.present["not-ours"] = [{"id": "x", "userId": "buyer", "joinTime": stamp}]

        report = daily_events.poll_presence(db_session, provider, duration_seconds=300, now=utcnow())
        assert report == {"daily_calls_polled": 1, "daily_calls_started": 1}
        db_session.refresh(call)
        assert call.started_at == joined and call.buyer_joined_at == joined

        # The buyer leaves: Daily no longer lists them, and their interval ends where last seen.
        seen_at = utcnow()
        fake.present[call.room_name] = fake.present[call.room_name][1:]
        daily_events.poll_presence(db_session, provider, duration_seconds=300, now=seen_at + timedelta(seconds=15))
        buyer = db_session.scalar(select(PresenceInterval).where(PresenceInterval.party == "buyer"))
        assert buyer.ended_at is not None and buyer.ended_at <= seen_at + timedelta(seconds=1)

    def test_no_request_to_daily_without_a_live_call(self, db_session, fake) -> None:
        call = accepted_call(room="daily")
        call.status = RequestStatus.COMPLETED
        db_session.flush()
        provider = DailyVideo("daily-test-key", fake.url)
        assert daily_events.poll_presence(db_session, provider, duration_seconds=300, now=utcnow()) == {
            "daily_calls_polled": 0
        }
        assert fake.requests == []
        assert db_session.get(CallRequest, call.id) is not None
