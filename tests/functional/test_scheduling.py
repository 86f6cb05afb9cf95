"""Scheduling through the Flask client: availability (API, profile form, switch and heartbeat),
the paywall's "Available now" / next window and its proposed times, the checkout API's
``proposedStarts`` and ``timeZone`` through the test-mode payment to a request that carries them,
accept with ``startAt``, the waiting page and its forms, the parties' JSON endpoints, and the dev
mailbox serving the invitation."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import vobject
from freezegun import freeze_time
from sqlalchemy import select

from app.db import utcnow
from app.integrations.payments import sign_payload
from app.models import CallRequest, CancelReason, Checkout, OutboxEmail, RequestStatus, Transaction
from app.services.availability import parse_weekly, save_availability
from app.services.calls import join_url
from tasks.email_delivery import send_email
from tasks.stripe_events import process_stripe_event
from tests.conftest import csrf_token, login
from tests.factories import ProfileFactory

NOW = "2026-12-07 12:00:00"  # a Monday
TUESDAY = datetime(2026, 12, 8, 14, 0, tzinfo=UTC)  # 09:00 in New York, 15:00 in Paris
WEDNESDAY = datetime(2026, 12, 9, 15, 0, tzinfo=UTC)


def z(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@pytest.fixture(autouse=True)
def _fresh_limits(redis, settings):  # type: ignore[no-untyped-def]
    for key in redis.scan_iter(f"LIMITS:LIMITER/chatlink:{settings.celery_queue}:*"):
        redis.delete(key)
    yield


@pytest.fixture
def frozen():  # type: ignore[no-untyped-def]
    with freeze_time(NOW) as clock:
        yield clock


@pytest.fixture
def seller(db_session, frozen):  # type: ignore[no-untyped-def]
    """A seller in New York who takes calls on weekdays, 08:00-18:00 their time."""
    profile = ProfileFactory(display_name="Ada Lovelace", slug="ada", price_cents=2500)
    weekdays = [{"day": d, "from": "08:00", "to": "18:00"} for d in ("mon", "tue", "wed", "thu", "fri")]
    save_availability(
        db_session,
        profile.user_id,
        now=utcnow(),
        idle_seconds=1800,
        time_zone="America/New_York",
        weekly=parse_weekly(weekdays),
    )
    return profile


def api_post(client, path: str, body: object):  # type: ignore[no-untyped-def]
    return client.post(path, json=body, headers={"X-CSRFToken": csrf_token(client)})


def pay_and_fulfil(client, session_id: str, enqueued) -> None:  # type: ignore[no-untyped-def]
    """The built-in checkout's pay button, its signed webhook and the task, as in production."""
    client.post(f"/dev/checkout/{session_id}/pay", data={"csrf_token": csrf_token(client)})
    (event,) = [args[0] for name, args, _ in enqueued if name == "tasks.builtin_payments.deliver_builtin_webhook"]
    payload = json.dumps(event).encode()
    secret = client.application.extensions["settings"].stripe_webhook_secret
    response = client.post(
        "/api/webhooks/stripe", data=payload, headers={"Stripe-Signature": sign_payload(payload, secret)}
    )
    assert response.status_code == 200
    (row_id,) = [args[0] for name, args, _ in enqueued if name == "tasks.stripe_events.process_stripe_event"]
    with client.application.app_context():
        assert process_stripe_event(row_id) == "processed"


def scheduled_call(client, db_session, seller, enqueued) -> CallRequest:  # type: ignore[no-untyped-def]
    """Paid with two proposed times and accepted for Tuesday's, through the API."""
    answer = api_post(
        client,
        "/api/payments/checkout",
        {
            "slug": "ada",
            "buyerEmail": "buyer@example.org",
            "proposedStarts": [z(TUESDAY), z(WEDNESDAY)],
            "timeZone": "Europe/Paris",
        },
    )
    assert answer.status_code == 201, answer.get_json()
    pay_and_fulfil(client, answer.get_json()["sessionId"], enqueued)
    request = db_session.scalar(select(CallRequest).where(CallRequest.seller_id == seller.user_id))
    login(client, seller.user)
    accepted = api_post(client, f"/api/requests/{request.id}/accept", {"startAt": z(TUESDAY)})
    assert accepted.status_code == 200, accepted.get_json()
    db_session.expire_all()
    return db_session.get(CallRequest, request.id)


class TestCheckoutWithProposedTimes:
    def test_the_times_travel_from_the_api_to_the_request_and_the_seller_accepts_one(  # type: ignore[no-untyped-def]
        self, client, db_session, seller, enqueued
    ) -> None:
        answer = api_post(
            client,
            "/api/payments/checkout",
            {
                "slug": "ada",
                "buyerEmail": "buyer@example.org",
                # Any offset is the same instant: 10:00 in New York is 15:00 UTC.
                "proposedStarts": ["2026-12-09T10:00:00-05:00", z(TUESDAY)],
                "timeZone": "Europe/Paris",
            },
        )
        assert answer.status_code == 201
        session_id = answer.get_json()["sessionId"]
        checkout = db_session.scalar(select(Checkout).where(Checkout.stripe_checkout_session_id == session_id))
        assert (checkout.proposed_starts, checkout.buyer_time_zone) == ([TUESDAY, WEDNESDAY], "Europe/Paris")

        pay_and_fulfil(client, session_id, enqueued)
        status = client.get(f"/api/requests/status?session_id={session_id}").get_json()
        assert status["proposedStarts"] == [z(TUESDAY), z(WEDNESDAY)] and status["scheduledStart"] is None
        transaction = db_session.scalar(select(Transaction).where(Transaction.stripe_checkout_session_id == session_id))
        # The built-in gateway says what Stripe says for a card hold: capture before 7 days.
        assert transaction.capture_before == utcnow() + timedelta(days=7)

        login(client, seller.user)
        [listed] = client.get("/api/requests?status=pending").get_json()["requests"]
        assert listed["proposedStarts"] == [z(TUESDAY), z(WEDNESDAY)]
        assert listed["expiresAt"] == z(WEDNESDAY) and listed["buyerTimeZone"] == "Europe/Paris"

        refused = api_post(client, f"/api/requests/{listed['id']}/accept", {"startAt": "2026-12-08T14:30:00Z"})
        assert refused.status_code == 422 and "startAt" in refused.get_json()["error"]["fields"]
        accepted = api_post(client, f"/api/requests/{listed['id']}/accept", {"startAt": "2026-12-08T15:00:00+01:00"})
        assert accepted.status_code == 200
        body = accepted.get_json()["request"]
        assert (body["status"], body["scheduledStart"], body["joinOpensAt"]) == (
            "ACCEPTED",
            z(TUESDAY),
            z(TUESDAY - timedelta(minutes=5)),
        )
        assert client.get(f"/api/requests/status?session_id={session_id}").get_json()["scheduledStart"] == z(TUESDAY)
        templates = {e.template for e in db_session.scalars(select(OutboxEmail))}
        assert {"call_scheduled_buyer", "call_scheduled_seller"} <= templates

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"proposedStarts": "2026-12-08T14:00:00Z"}, "proposedStarts"),
            ({"proposedStarts": [z(TUESDAY)] * 4}, "proposedStarts"),
            ({"proposedStarts": ["2026-12-08T14:00:00"]}, "proposedStarts"),  # no offset: whose 14:00?
            ({"proposedStarts": ["2026-12-12T15:00:00Z"]}, "proposedStarts"),  # a Saturday
            ({"proposedStarts": ["2026-12-14T15:00:00Z"]}, "proposedStarts"),  # past the card hold
            ({"proposedStarts": ["2026-12-07T12:10:00Z"]}, "proposedStarts"),  # too soon
            ({"timeZone": "Europe/Atlantis"}, "timeZone"),
            ({"timeZone": 1}, "timeZone"),
        ],
    )
    def test_refused_times_name_their_field(self, client, db_session, seller, body, field) -> None:  # type: ignore[no-untyped-def]
        answer = api_post(client, "/api/payments/checkout", {"slug": "ada", "buyerEmail": "b@example.org", **body})
        assert answer.status_code == 422
        assert field in answer.get_json()["error"]["fields"]
        assert db_session.scalar(select(Checkout).where(Checkout.seller_id == seller.user_id)) is None

    def test_as_soon_as_possible_is_as_before(self, client, db_session, seller) -> None:  # type: ignore[no-untyped-def]
        answer = api_post(client, "/api/payments/checkout", {"slug": "ada", "buyerEmail": "b@example.org"})
        assert answer.status_code == 201
        checkout = db_session.scalar(select(Checkout).where(Checkout.seller_id == seller.user_id))
        assert (checkout.proposed_starts, checkout.buyer_time_zone) == ([], None)


class TestAvailabilityApi:
    def test_read_write_partial_and_refusals(self, client, db_session, seller, frozen) -> None:  # type: ignore[no-untyped-def]
        assert client.get("/api/availability").status_code == 401
        login(client, seller.user)
        got = client.get("/api/availability").get_json()
        assert got["timeZone"] == "America/New_York" and got["availableNow"] is False
        assert got["weekly"][0] == {"day": "mon", "from": "08:00", "to": "18:00"}

        saved = api_post(
            client,
            "/api/availability",
            {
                "timeZone": "Asia/Kolkata",
                "weekly": [{"day": "sun", "from": "10:30", "to": "12:00"}],
                "availableNow": True,
            },
        ).get_json()
        assert saved == {
            "timeZone": "Asia/Kolkata",
            "weekly": [{"day": "sun", "from": "10:30", "to": "12:00"}],
            "availableNow": True,
            "availableNowUntil": "2026-12-07T12:30:00Z",
        }
        assert api_post(client, "/api/availability", {"availableNow": False}).get_json()["weekly"] == saved["weekly"]
        bad = api_post(client, "/api/availability", {"weekly": [{"day": "sun", "from": "12:00", "to": "10:00"}]})
        assert bad.status_code == 422 and "weekly" in bad.get_json()["error"]["fields"]
        assert api_post(client, "/api/availability", {"timeZone": "Nowhere/Land"}).status_code == 422
        assert api_post(client, "/api/availability", {"availableNow": "yes"}).status_code == 422

    def test_the_switch_turns_itself_off_unless_the_dashboard_is_open(self, client, seller, frozen) -> None:  # type: ignore[no-untyped-def]
        login(client, seller.user)
        api_post(client, "/api/availability", {"availableNow": True})
        frozen.tick(timedelta(minutes=20))
        assert api_post(client, "/api/availability/heartbeat", {}).get_json()["availableNow"] is True
        frozen.tick(timedelta(minutes=15))  # 35 minutes in: on thanks to the heartbeat at 20
        assert client.get("/api/availability").get_json()["availableNow"] is True
        frozen.tick(timedelta(minutes=20))  # 55: thirty minutes after the last sign of the seller
        assert client.get("/api/availability").get_json()["availableNow"] is False
        assert api_post(client, "/api/availability/heartbeat", {}).get_json()["availableNow"] is False


class TestPages:
    def test_the_paywall_says_available_now_or_the_next_window(self, client, db_session, seller, frozen) -> None:  # type: ignore[no-untyped-def]
        page = client.get("/u/ada").get_data(as_text=True)
        # Monday 12:00 UTC is 07:00 in New York: the next window is today 08:00-18:00 there.
        assert 'Next available: <time datetime="2026-12-07T13:00:00+00:00"' in page
        assert 'name="proposed_1" type="datetime-local"' in page and "data-browser-zone" in page
        save_availability(db_session, seller.user_id, now=utcnow(), idle_seconds=1800, available_now=True)
        page = client.get("/u/ada").get_data(as_text=True)
        assert "Available now" in page and "Next available" not in page

    def test_a_seller_without_hours_keeps_todays_paywall(self, client, db_session, frozen) -> None:  # type: ignore[no-untyped-def]
        ProfileFactory(slug="plain")
        page = client.get("/u/plain").get_data(as_text=True)
        assert "proposed_1" not in page and "Next available" not in page and "timezone.js" not in page

    def test_the_form_reads_wall_times_in_the_chosen_zone(self, client, db_session, seller) -> None:  # type: ignore[no-untyped-def]
        data = {
            "buyer_email": "buyer@example.org",
            "submission_key": "k" * 24,
            "csrf_token": csrf_token(client),
            "when": "later",
            "time_zone": "Europe/Paris",
            "proposed_1": "2026-12-08T15:00",
            "proposed_2": "2026-12-09T16:00",
        }
        assert client.post("/u/ada", data=data).status_code == 303
        checkout = db_session.scalar(select(Checkout).where(Checkout.seller_id == seller.user_id))
        assert checkout.proposed_starts == [TUESDAY, WEDNESDAY]
        outside = client.post("/u/ada", data=dict(data, submission_key="m" * 24, proposed_1="2026-12-08T08:00"))
        assert outside.status_code == 422 and "outside the seller" in outside.get_data(as_text=True)

    def test_the_profile_form_saves_hours_in_the_sellers_words(self, client, db_session, seller) -> None:  # type: ignore[no-untyped-def]
        login(client, seller.user)
        assert 'id="availability"' in client.get("/profile").get_data(as_text=True)
        form = {
            "csrf_token": csrf_token(client),
            "time_zone": "Europe/Berlin",
            "mon": "09:00-12:00, 14:00 - 18:00",
            "fri": "8:30-12:00",
        }
        assert client.post("/profile/availability", data=form).status_code == 303
        weekly = client.get("/api/availability").get_json()["weekly"]
        assert weekly == [
            {"day": "mon", "from": "09:00", "to": "12:00"},
            {"day": "mon", "from": "14:00", "to": "18:00"},
            {"day": "fri", "from": "08:30", "to": "12:00"},
        ]
        client.post("/profile/availability", data=dict(form, mon="nine to five"))
        assert client.get("/api/availability").get_json()["weekly"] == weekly  # refused, kept
        assert "like 09:00-17:00" in client.get("/profile").get_data(as_text=True)

    def test_the_dashboard_offers_each_proposed_time(self, client, db_session, seller, enqueued) -> None:  # type: ignore[no-untyped-def]
        answer = api_post(
            client,
            "/api/payments/checkout",
            {"slug": "ada", "buyerEmail": "b@example.org", "proposedStarts": [z(TUESDAY)]},
        )
        pay_and_fulfil(client, answer.get_json()["sessionId"], enqueued)
        login(client, seller.user)
        page = client.get("/dashboard").get_data(as_text=True)
        assert f'data-start="{z(TUESDAY)}"' in page and "Accept for right now" in page
        assert "Tuesday 8 December 2026, 09:00" in page  # in the seller's own zone
        requests_page = client.get("/requests").get_data(as_text=True)
        assert f'name="start_at" value="{z(TUESDAY)}"' in requests_page


class TestTheBookedCall:
    def test_the_waiting_page_then_the_room(self, client, db_session, seller, enqueued, frozen, settings) -> None:  # type: ignore[no-untyped-def]
        call = scheduled_call(client, db_session, seller, enqueued)
        buyer = join_url("", settings.secret_key, call, "buyer")
        page = client.get(buyer)
        text = page.get_data(as_text=True)
        assert page.status_code == 200 and 'id="scheduled-call"' in text
        assert "Tuesday 8 December 2026, 15:00" in text  # the buyer's zone
        assert "Cancel the call" in text and "Propose another time" in text
        seller_page = client.get(join_url("", settings.secret_key, call, "seller")).get_data(as_text=True)
        assert "Tuesday 8 December 2026, 09:00" in seller_page and "Cancel the call" not in seller_page
        frozen.move_to(TUESDAY - timedelta(minutes=5))
        assert 'id="scheduled-call"' not in client.get(buyer).get_data(as_text=True)

    def test_the_parties_move_it_once_through_the_api(self, client, db_session, seller, enqueued, settings) -> None:  # type: ignore[no-untyped-def]
        call = scheduled_call(client, db_session, seller, enqueued)
        token = {party: join_url("", settings.secret_key, call, party).split("?t=")[1] for party in ("buyer", "seller")}
        new_start = z(WEDNESDAY + timedelta(hours=1))
        asked = client.post(f"/api/calls/{call.id}/reschedule", json={"token": token["seller"], "startAt": new_start})
        assert asked.status_code == 200 and asked.get_json()["call"]["reschedule"] == {
            "startAt": new_start,
            "askedBy": "seller",
            "answered": False,
        }
        assert (
            client.post(
                f"/api/calls/{call.id}/reschedule/answer", json={"token": token["seller"], "accept": True}
            ).status_code
            == 403
        )
        assert (
            client.post(f"/api/calls/{call.id}/reschedule/answer", json={"token": "forged", "accept": True}).status_code
            == 403
        )
        moved = client.post(f"/api/calls/{call.id}/reschedule/answer", json={"token": token["buyer"], "accept": True})
        assert moved.get_json()["call"]["scheduledStart"] == new_start
        again = client.post(f"/api/calls/{call.id}/reschedule", json={"token": token["buyer"], "startAt": z(TUESDAY)})
        assert again.status_code == 409 and again.get_json()["error"]["code"] == "already_asked"

    def test_only_the_buyer_cancels_and_the_page_form_works(
        self, client, db_session, seller, enqueued, settings
    ) -> None:  # type: ignore[no-untyped-def]
        call = scheduled_call(client, db_session, seller, enqueued)
        seller_token = join_url("", settings.secret_key, call, "seller").split("?t=")[1]
        assert client.post(f"/api/calls/{call.id}/cancel", json={"token": seller_token}).status_code == 403
        buyer = join_url("", settings.secret_key, call, "buyer")
        done = client.post(f"/call/{call.id}/cancel", data={"t": buyer.split("?t=")[1]})
        assert done.status_code == 303 and done.headers["Location"].endswith(buyer)
        db_session.expire_all()
        assert db_session.get(CallRequest, call.id).cancel_reason is CancelReason.BUYER_CANCELLED
        ended = client.get(buyer)
        assert ended.status_code == 410 and "cancelled this call in time" in ended.get_data(as_text=True)


def test_the_dev_mailbox_shows_and_serves_the_invitation(app, client, db_session, seller, enqueued) -> None:  # type: ignore[no-untyped-def]
    call = scheduled_call(client, db_session, seller, enqueued)
    invite = db_session.scalar(select(OutboxEmail).where(OutboxEmail.template == "call_scheduled_buyer"))
    with app.app_context():
        assert send_email(str(invite.id)) == "sent"
    [listed] = [
        e
        for e in client.get("/dev/mailbox.json?recipient=buyer@example.org").get_json()["emails"]
        if e["id"] == str(invite.id)
    ]
    [attachment] = listed["attachments"]
    assert attachment["name"] == "chatlink-call.ics"
    served = client.get(attachment["url"])
    assert served.headers["Content-Type"] == "text/calendar; charset=utf-8; method=REQUEST"
    assert served.headers["Content-Disposition"] == 'attachment; filename="chatlink-call.ics"'
    event = vobject.readOne(served.get_data(as_text=True))
    assert event.vevent.dtstart.value == TUESDAY and event.vevent.uid.value.startswith(f"call-{call.id}@")
    page = client.get(f"/dev/mailbox/{invite.id}").get_data(as_text=True)
    assert attachment["url"] in page
    assert re.search(r"Google Calendar: https://calendar\.google\.com/\S+", listed["textBody"])
    assert base64.b64decode(invite.context["attachments"][0]["content"]) == served.get_data()
    assert client.get(f"/dev/mailbox/{invite.id}/attachments/1").status_code == 404
    assert call.status is RequestStatus.ACCEPTED
