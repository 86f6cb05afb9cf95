"""``POST /api/video/create|join|presence|end`` and signaling, with the built-in room: the shapes
DESIGN.md promises, the credential checks, and a whole call through the API."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select, update

from app.db import utcnow
from app.models import CallRequest, LedgerEntry, OutboxEmail, PaymentState, RequestStatus
from app.services.calls import join_token
from tests.call_helpers import SECRET_KEY, accepted_call

ISO_UTC = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"


def post(client, path, call, party, **body):  # type: ignore[no-untyped-def]
    payload = {"requestId": str(call.id), "token": join_token(SECRET_KEY, call, party), "clientId": f"{party}-window-1"}
    payload.update(body)
    return client.post(f"/api/video/{path}", json=payload)


def both_in(client, call) -> dict:  # type: ignore[no-untyped-def]
    for party in ("buyer", "seller"):
        assert post(client, "join", call, party).status_code == 200
        response = post(client, "presence", call, party, state="connected")
        assert response.status_code == 200, response.get_json()
    return response.get_json()


class TestCreate:
    def test_makes_the_room_if_the_task_has_not_yet(self, client, db_session) -> None:
        call = accepted_call(room=None)
        response = post(client, "create", call, "buyer")

        assert response.status_code == 200
        body = response.get_json()
        assert body["provider"] == "builtin"
        assert body["roomUrl"].endswith(f"/call/{call.id}")
        assert body["status"] == "accepted"
        db_session.refresh(call)
        assert call.room_ready_at is not None

    def test_no_room_before_the_payment_is_captured(self, client, db_session) -> None:
        call = accepted_call(room=None, payment_state=PaymentState.HELD)
        response = post(client, "create", call, "seller")
        assert response.status_code == 409
        assert response.get_json()["error"]["code"] == "room_not_ready"


class TestJoin:
    def test_answers_the_documented_shape(self, client, db_session) -> None:
        call = accepted_call()
        response = post(client, "join", call, "buyer")

        assert response.status_code == 200
        body = response.get_json()
        assert {"provider", "roomUrl", "durationSeconds", "startedAt", "endsAt", "serverTime"} <= set(body)
        assert body["provider"] == "builtin" and "token" not in body  # no provider token for the built-in room
        assert body["durationSeconds"] == 300
        assert body["startedAt"] is None and body["endsAt"] is None
        assert re.match(ISO_UTC, body["serverTime"])
        server_time = datetime.fromisoformat(body["serverTime"].replace("Z", "+00:00"))
        assert abs((server_time - utcnow()).total_seconds()) < 5
        assert body["iceServers"] == []

    def test_needs_no_csrf_token_the_join_token_is_the_credential(self, client, db_session) -> None:
        # The app enforces CSRF elsewhere; this request carries no X-CSRFToken header and no cookie.
        assert post(client, "join", accepted_call(), "seller").status_code == 200

    def test_a_third_person_is_refused(self, client, db_session) -> None:
        call = accepted_call()
        assert post(client, "join", call, "buyer").status_code == 200
        second = post(client, "join", call, "buyer", clientId="forwarded-link-1")
        assert second.status_code == 409
        assert second.get_json()["error"]["code"] == "in_use"
        # The seller's place is the seller's own.
        assert post(client, "join", call, "seller").status_code == 200

    @pytest.mark.parametrize(
        "body, status",
        [
            ({"requestId": None}, 422),
            ({"token": ""}, 422),
            ({"clientId": "x"}, 422),
            ({"clientId": None}, 422),
        ],
    )
    def test_refuses_malformed_input(self, client, db_session, body, status) -> None:
        assert post(client, "join", accepted_call(), "buyer", **body).status_code == status

    def test_refuses_a_body_that_is_not_json(self, client, db_session) -> None:
        response = client.post("/api/video/join", data="requestId=1", content_type="text/plain")
        assert response.status_code == 400
        assert response.get_json()["error"]["code"] == "bad_request"


class TestCredentials:
    def test_wrong_call(self, client, db_session) -> None:
        call, other = accepted_call(), accepted_call()
        payload = {"requestId": str(call.id), "token": join_token(SECRET_KEY, other, "seller"), "clientId": "w-1234567"}
        response = client.post("/api/video/join", json=payload)
        assert response.status_code == 403
        assert response.get_json()["error"]["code"] == "invalid_credential"

    def test_wrong_party(self, client, db_session) -> None:
        call = accepted_call()
        both_in(client, call)
        # The buyer's credential ends the call as the buyer, never as the seller: the buyer who
        # ends early still pays in full, and the seller is paid in full.
        response = post(client, "end", call, "buyer")
        assert (response.status_code, response.get_json()["endedBy"]) == (200, "buyer")
        db_session.refresh(call)
        assert (call.ended_by, call.settlement.refund_cents) == ("buyer", 0)

    def test_forged_token(self, client, db_session) -> None:
        call = accepted_call()
        forged = join_token("another-secret-key", call, "buyer")
        response = client.post(
            "/api/video/join", json={"requestId": str(call.id), "token": forged, "clientId": "w-1234567"}
        )
        assert response.status_code == 403

    def test_expired(self, client, db_session) -> None:
        call = accepted_call(now=utcnow() - timedelta(seconds=901))
        response = post(client, "join", call, "buyer")
        assert response.status_code == 403
        assert response.get_json()["error"]["code"] == "expired_credential"

    def test_reused_after_the_end(self, client, db_session) -> None:
        call = accepted_call()
        both_in(client, call)
        assert post(client, "end", call, "seller").get_json()["status"] == "completed"

        for path, extra in (("join", {}), ("presence", {"state": "joined"}), ("create", {})):
            response = post(client, path, call, "buyer", **extra)
            assert response.status_code == 409, path
            assert response.get_json()["error"]["code"] == "call_ended"
        assert client.get(f"/call/{call.id}?t={join_token(SECRET_KEY, call, 'buyer')}").status_code == 410


class TestPresenceAndEnd:
    def test_the_clock_starts_when_both_are_in(self, client, db_session, enqueued) -> None:
        call = accepted_call()
        post(client, "join", call, "buyer")
        first = post(client, "presence", call, "buyer", state="joined").get_json()
        assert first["startedAt"] is None and first["buyerPresent"] is True

        body = both_in(client, call)

        assert body["status"] == "accepted"
        assert body["startedAt"] is not None
        assert set(body) >= {"status", "startedAt", "endsAt", "serverTime"}
        for key in ("startedAt", "endsAt", "serverTime"):
            assert re.match(ISO_UTC, body[key]), body[key]
        db_session.refresh(call)
        assert call.ends_at - call.started_at == timedelta(seconds=300)
        assert ("tasks.call_endings.end_call", (str(call.id),), {"eta": call.ends_at}) in enqueued

    def test_presence_needs_a_state(self, client, db_session) -> None:
        response = post(client, "presence", accepted_call(), "buyer", state="dancing")
        assert response.status_code == 422
        assert "state" in response.get_json()["error"]["fields"]

    def test_leaving_then_rejoining(self, client, db_session) -> None:
        call = accepted_call()
        both_in(client, call)
        left = post(client, "presence", call, "buyer", state="left").get_json()
        assert left["buyerPresent"] is False and left["startedAt"] is not None
        # Another window may now take the buyer's place, and the clock does not restart.
        back = post(client, "presence", call, "buyer", state="joined", clientId="buyer-window-2").get_json()
        assert back["buyerPresent"] is True and back["startedAt"] == left["startedAt"]

    def test_the_seller_ends_early_and_a_repeat_is_a_no_op(self, client, db_session, enqueued) -> None:
        call = accepted_call()
        both_in(client, call)
        first = post(client, "end", call, "seller")
        second = post(client, "end", call, "seller")

        assert (first.status_code, first.get_json()["status"]) == (200, "completed")
        assert (second.status_code, second.get_json()["status"]) == (200, "completed")
        db_session.refresh(call)
        assert call.ended_by == "seller"
        # Ended at once, far under a minute of connected time: the buyer gets it all back.
        assert (call.settlement.outcome.value, call.settlement.refund_cents) == ("seller_ended_early", 1000)
        assert "too early for a paid call" in first.get_json()["outcome"]
        assert enqueued.names().count("tasks.call_endings.refund_buyer") == 1
        earnings = db_session.scalar(
            select(func.count()).select_from(LedgerEntry).where(LedgerEntry.call_request_id == call.id)
        )
        assert earnings == 0

    def test_the_seller_ends_after_two_minutes_the_buyer_is_refunded_the_rest(self, client, db_session) -> None:
        call = accepted_call()
        start = utcnow()
        with freeze_time(start) as clock:
            both_in(client, call)
            for _ in range(32):  # both pages keep saying their media flows, every 4 s
                clock.tick(4)
                for party in ("buyer", "seller"):
                    post(client, "presence", call, party, state="connected")
            clock.tick(2)  # 130 s after the start
            ended = post(client, "end", call, "seller").get_json()
            buyer_view = post(client, "signal/poll", call, "buyer").get_json()

        db_session.refresh(call)
        settled = call.settlement
        assert settled.connected_seconds == 130
        # $10.00 for 300 s: 130 s kept is $4.3333..., rounded down for the buyer to $4.33.
        assert (settled.refund_cents, settled.fee_cents, settled.net_cents) == (567, 87, 346)
        assert ended["outcome"].startswith("You ended the call after 2 min 10 s: the buyer is refunded $5.67")
        assert buyer_view["outcome"] == (
            "The seller ended the call after 2 min 10 s: you will be refunded $5.67 for the unused time, and pay $4.33."
        )
        [earning] = db_session.scalars(select(LedgerEntry).where(LedgerEntry.call_request_id == call.id))
        assert earning.amount_cents == 346

    def test_nothing_to_end_before_the_start(self, client, db_session) -> None:
        response = post(client, "end", accepted_call(), "seller")
        assert response.status_code == 409
        assert response.get_json()["error"]["code"] == "not_started"

    def test_a_whole_call_through_the_api_and_the_timer_task(self, client, db_session, app) -> None:
        from tasks.call_endings import end_call

        call = accepted_call(room=None)
        post(client, "create", call, "seller")
        both_in(client, call)
        # Five minutes pass.
        db_session.execute(
            update(CallRequest)
            .where(CallRequest.id == call.id)
            .values(
                started_at=CallRequest.started_at - timedelta(seconds=301),
                ends_at=CallRequest.ends_at - timedelta(seconds=301),
            )
        )

        with app.app_context():
            assert end_call(str(call.id)) == "ended"
            assert end_call(str(call.id)) == "unchanged"

        db_session.refresh(call)
        assert (call.status, call.ended_by) == (RequestStatus.COMPLETED, "timer")
        assert call.room_deleted_at is not None
        templates = set(
            db_session.scalars(select(OutboxEmail.template).where(OutboxEmail.dedupe_key.like(f"%{call.id}")))
        )
        assert templates == {"call_ready_buyer", "call_completed_buyer", "call_completed_seller"}


class TestSignaling:
    def signal(self, client, call, party, message, **extra):  # type: ignore[no-untyped-def]
        return post(client, "signal", call, party, message=message, **extra)

    def poll(self, client, call, party, after=None, **extra):  # type: ignore[no-untyped-def]
        return post(client, "signal/poll", call, party, after=after, **extra)

    def test_an_offer_reaches_the_other_party(self, client, db_session) -> None:
        call = accepted_call()
        offer = {"type": "offer", "from": "seller-window-1", "to": "buyer-window-1", "sdp": "v=0\r\n"}
        sent = self.signal(client, call, "seller", offer)
        assert sent.status_code == 202

        polled = self.poll(client, call, "buyer").get_json()
        [message] = polled["messages"]
        assert (message["type"], message["sdp"], message["from"]) == ("offer", "v=0\r\n", "seller-window-1")
        assert polled["cursor"] == message["id"] == sent.get_json()["id"]
        assert polled["status"] == "accepted" and polled["serverTime"]
        assert self.poll(client, call, "buyer", after=polled["cursor"]).get_json()["messages"] == []
        assert self.poll(client, call, "seller").get_json()["messages"] == []

    def test_join_gives_a_fresh_page_a_cursor_past_old_messages(self, client, db_session) -> None:
        call = accepted_call()
        self.signal(client, call, "seller", {"type": "hello", "from": "seller-window-1"})
        cursor = post(client, "join", call, "buyer").get_json()["signalCursor"]
        assert self.poll(client, call, "buyer", after=cursor).get_json()["messages"] == []

    def test_refuses_what_is_not_signaling(self, client, db_session) -> None:
        call = accepted_call()
        response = self.signal(client, call, "seller", {"type": "shell", "from": "seller-window-1"})
        assert response.status_code == 422
        assert self.poll(client, call, "seller", after="nonsense").status_code == 422

    def test_another_window_of_the_same_party_cannot_listen_in(self, client, db_session) -> None:
        call = accepted_call()
        assert self.poll(client, call, "buyer").status_code == 200
        intruder = self.poll(client, call, "buyer", clientId="other-window-9")
        assert intruder.status_code == 409
        assert intruder.get_json()["error"]["code"] == "in_use"

    def test_signaling_stops_at_the_end(self, client, db_session) -> None:
        call = accepted_call()
        both_in(client, call)
        post(client, "end", call, "seller")
        offer = {"type": "offer", "from": "seller-window-1", "sdp": "v=0"}
        assert self.signal(client, call, "seller", offer).status_code == 409
        # A poll answers the final state, which is how the other page learns of the end.
        polled = self.poll(client, call, "buyer")
        assert polled.status_code == 200
        assert (polled.get_json()["status"], polled.get_json()["messages"]) == ("completed", [])

    def test_a_wrong_token_reads_nothing(self, client, db_session) -> None:
        call = accepted_call()
        response = client.post(
            "/api/video/signal/poll", json={"requestId": str(call.id), "token": "guess", "clientId": "window-1234"}
        )
        assert response.status_code == 403
