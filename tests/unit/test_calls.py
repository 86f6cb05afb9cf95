"""Join credentials, the room, presence and the start of the clock (app/services/calls.py and
app/services/call_presence.py), on real PostgreSQL and Redis."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.db import db, utcnow
from app.formats import iso
from app.integrations.video import BuiltinVideo, DailyVideo, unix_seconds
from app.models import CallRequest, EventLog, OutboxEmail, PaymentState, RequestStatus
from app.refusals import Conflict
from app.services import call_presence, calls
from app.services.calls import AccessDenied, CallConfig
from app.services.signaling import PresenceSlots, Signaling
from tests.call_helpers import SECRET_KEY, accepted_call
from tests.conftest import RUN_ID
from tests.fakes.daily_api import FakeDaily

NAMESPACE = f"chatlink:test-{RUN_ID}"


@pytest.fixture
def config(settings) -> CallConfig:
    return CallConfig.from_settings(settings)


@pytest.fixture
def builtin(settings) -> BuiltinVideo:
    return BuiltinVideo(settings.app_url)


@pytest.fixture
def fake_daily() -> Iterator[FakeDaily]:
    with FakeDaily(api_key="daily-key") as fake:
        yield fake


@pytest.fixture
def daily(fake_daily) -> DailyVideo:
    return DailyVideo("daily-key", fake_daily.url, backoff_factor=0.01, backoff_max=0.05)


@pytest.fixture
def slots(redis) -> PresenceSlots:
    return PresenceSlots(redis, NAMESPACE)


@pytest.fixture
def signaling(redis) -> Signaling:
    return Signaling(redis, NAMESPACE)


def access_for(session, call, party, now=None):  # type: ignore[no-untyped-def]
    token = calls.join_token(SECRET_KEY, call, party)
    return calls.check_access(session, str(call.id), token, secret_key=SECRET_KEY, now=now or utcnow())


class TestJoinCredentials:
    def test_a_token_is_bound_to_the_call_and_the_party(self, db_session) -> None:
        call, other = accepted_call(), accepted_call()
        buyer, seller = calls.join_token(SECRET_KEY, call, "buyer"), calls.join_token(SECRET_KEY, call, "seller")

        assert buyer != seller
        assert buyer != calls.join_token(SECRET_KEY, other, "buyer")
        assert calls.join_token(SECRET_KEY, call, "buyer") == buyer  # deterministic: no storage needed
        assert len(buyer) == 43 and "=" not in buyer  # base64url of 32 bytes, unpadded
        assert calls.party_for_token(SECRET_KEY, call, buyer) == "buyer"
        assert calls.party_for_token(SECRET_KEY, call, seller) == "seller"

    def test_rotating_the_join_key_revokes_both_links(self, db_session) -> None:
        call = accepted_call()
        old = calls.join_token(SECRET_KEY, call, "buyer")
        call.join_key = "rotated"
        assert calls.party_for_token(SECRET_KEY, call, old) is None

    def test_the_secret_key_matters(self, db_session) -> None:
        call = accepted_call()
        assert calls.join_token("another-secret", call, "buyer") != calls.join_token(SECRET_KEY, call, "buyer")

    @pytest.mark.parametrize("token", ["", "x", "é" * 43, "A" * 500, "seller"])
    def test_garbage_opens_nothing(self, db_session, token) -> None:
        assert calls.party_for_token(SECRET_KEY, accepted_call(), token) is None

    def test_join_url(self, db_session, settings) -> None:
        call = accepted_call()
        url = calls.join_url(settings.app_url + "/", SECRET_KEY, call, "seller")
        assert url == f"{settings.app_url}/call/{call.id}?t={calls.join_token(SECRET_KEY, call, 'seller')}"

    def test_no_link_before_accept(self, db_session) -> None:
        call = accepted_call()
        call.join_key = None
        assert calls.join_url("http://x", SECRET_KEY, call, "buyer") is None
        with pytest.raises(ValueError):
            calls.join_token(SECRET_KEY, call, "buyer")
        with pytest.raises(ValueError):
            calls.join_token(SECRET_KEY, accepted_call(), "admin")


class TestAccess:
    def test_the_right_token_opens_the_call(self, db_session) -> None:
        call = accepted_call()
        access = access_for(db_session, call, "seller")
        assert (access.call.id, access.party, access.ended) == (call.id, "seller", False)

    def test_a_token_for_another_call_is_refused(self, db_session) -> None:
        call, other = accepted_call(), accepted_call()
        with pytest.raises(AccessDenied) as denied:
            calls.check_access(
                db_session,
                str(call.id),
                calls.join_token(SECRET_KEY, other, "buyer"),
                secret_key=SECRET_KEY,
                now=utcnow(),
            )
        assert denied.value.reason == "invalid"

    @pytest.mark.parametrize("request_id", ["not-a-uuid", str(uuid.uuid4()), ""])
    def test_an_unknown_call_is_refused(self, db_session, request_id) -> None:
        with pytest.raises(AccessDenied):
            calls.check_access(db_session, request_id, "anything", secret_key=SECRET_KEY, now=utcnow())

    def test_the_link_expires_with_the_join_window(self, db_session) -> None:
        now = utcnow()
        call = accepted_call(now=now)
        with pytest.raises(AccessDenied) as denied:
            access_for(db_session, call, "buyer", now=now + timedelta(seconds=900))
        assert denied.value.reason == "expired"

    def test_a_started_call_stays_open_past_the_join_window_until_its_end(self, db_session) -> None:
        now = utcnow()
        call = accepted_call(now=now)
        call.started_at, call.ends_at = now + timedelta(seconds=850), now + timedelta(seconds=1150)
        db_session.flush()
        assert access_for(db_session, call, "buyer", now=now + timedelta(seconds=1000)).ended is False
        assert access_for(db_session, call, "buyer", now=now + timedelta(seconds=1150)).ended is True

    @pytest.mark.parametrize("status", [RequestStatus.COMPLETED, RequestStatus.CANCELLED])
    def test_after_the_end_the_link_says_so(self, db_session, status) -> None:
        call = accepted_call()
        call.status = status
        call.cancel_reason = "seller_no_show" if status == RequestStatus.CANCELLED else None
        db_session.flush()
        assert access_for(db_session, call, "buyer").ended is True

    def test_a_request_never_accepted_has_no_link(self, db_session) -> None:
        call = accepted_call()
        token = calls.join_token(SECRET_KEY, call, "buyer")
        call.status, call.join_key = RequestStatus.PENDING, None
        db_session.flush()
        with pytest.raises(AccessDenied):
            calls.check_access(db_session, str(call.id), token, secret_key=SECRET_KEY, now=utcnow())


class TestProvisioning:
    def test_creates_the_room_and_emails_the_buyer_their_link(self, db_session, builtin, config) -> None:
        now = utcnow()
        call = accepted_call(now=now, room=None)

        assert calls.provision_room(db_session, call.id, provider=builtin, config=config, now=now) == "created"

        db_session.refresh(call)
        assert call.video_provider == "builtin"
        assert call.room_name == calls.room_name_for(SECRET_KEY, call)
        assert call.room_name.startswith("cl-") and len(call.room_name) == 35
        assert call.room_url == f"{config.app_url}/call/{call.id}"
        assert call.room_ready_at == now
        [email] = db_session.scalars(select(OutboxEmail).where(OutboxEmail.template == "call_ready_buyer")).all()
        assert email.recipient == call.buyer_email
        assert email.context["join_url"] == calls.join_url(config.app_url, SECRET_KEY, call, "buyer")
        assert email.context["seller_name"] == "Ada Lovelace"
        assert email.dedupe_key == f"call_ready:buyer:{call.id}"

    def test_a_repeat_changes_nothing(self, db_session, builtin, config) -> None:
        call = accepted_call(room=None)
        calls.provision_room(db_session, call.id, provider=builtin, config=config, now=utcnow())
        assert calls.provision_room(db_session, call.id, provider=builtin, config=config, now=utcnow()) == "exists"
        count = db_session.scalar(
            select(func.count()).select_from(OutboxEmail).where(OutboxEmail.template == "call_ready_buyer")
        )
        assert count == 1

    def test_makes_a_private_daily_room_that_outlives_the_join_window(
        self, db_session, daily, fake_daily, config
    ) -> None:
        now = utcnow()
        call = accepted_call(now=now, room=None)

        calls.provision_room(db_session, call.id, provider=daily, config=config, now=now)

        db_session.refresh(call)
        room = fake_daily.rooms[call.room_name]
        assert room["privacy"] == "private"
        expected_exp = call.join_deadline + timedelta(seconds=config.duration_seconds + calls.ROOM_GRACE_SECONDS)
        assert room["config"]["exp"] == unix_seconds(expected_exp)
        assert (call.video_provider, call.room_url) == ("daily", room["url"])

    def test_a_room_made_before_a_crash_is_found_again(self, db_session, daily, fake_daily, config) -> None:
        call = accepted_call(room=None)
        daily.create_room(name=calls.room_name_for(SECRET_KEY, call), request_id=str(call.id), expires_at=utcnow())

        assert calls.provision_room(db_session, call.id, provider=daily, config=config, now=utcnow()) == "created"
        assert len(fake_daily.rooms) == 1

    def test_a_daily_outage_is_retried_later(self, db_session, daily, fake_daily, config) -> None:
        call = accepted_call(room=None)
        fake_daily.fail_next(503, 503, 503, 503)
        with pytest.raises(calls.RetryLater):
            calls.provision_room(db_session, call.id, provider=daily, config=config, now=utcnow())
        db_session.refresh(call)
        assert call.room_ready_at is None

    @pytest.mark.parametrize("state", [PaymentState.HELD, PaymentState.VOIDED, PaymentState.REFUNDED])
    def test_no_room_until_the_payment_is_captured(self, db_session, builtin, config, state) -> None:
        call = accepted_call(room=None, payment_state=state)
        assert calls.provision_room(db_session, call.id, provider=builtin, config=config, now=utcnow()) == "skipped"

    def test_no_room_after_the_join_window(self, db_session, builtin, config) -> None:
        now = utcnow()
        call = accepted_call(now=now, room=None)
        later = now + timedelta(seconds=900)
        assert calls.provision_room(db_session, call.id, provider=builtin, config=config, now=later) == "skipped"

    def test_no_room_for_a_request_not_accepted(self, db_session, builtin, config) -> None:
        call = accepted_call(room=None)
        call.status = RequestStatus.DECLINED
        db_session.flush()
        assert calls.provision_room(db_session, call.id, provider=builtin, config=config, now=utcnow()) == "skipped"
        assert (
            calls.provision_room(db_session, uuid.uuid4(), provider=builtin, config=config, now=utcnow()) == "skipped"
        )


def join(session, call, party, *, provider, slots, config, now, client=None, state="connected"):  # type: ignore[no-untyped-def]
    access = access_for(session, call, party, now=now)
    return call_presence.report_presence(
        session,
        access,
        state,
        provider=provider,
        slots=slots,
        client_id=client or f"{party}-window-1",
        config=config,
        now=now,
    )


class TestPresenceAndClock:
    def test_joined_alone_never_starts_the_clock(self, db_session, builtin, slots, config) -> None:
        now = utcnow()
        call = accepted_call(now=now)
        for party in ("buyer", "seller"):
            state = join(db_session, call, party, provider=builtin, slots=slots, config=config, now=now, state="joined")
        db_session.refresh(call)
        assert (call.started_at, state["buyerPresent"], state["sellerPresent"]) == (None, True, True)
        assert call.buyer_joined_at == call.seller_joined_at == now  # both joined: the no-show rules know it

    def test_media_that_stopped_before_the_other_connected_does_not_start_it(
        self, db_session, builtin, slots, config
    ) -> None:
        now = utcnow()
        call = accepted_call(now=now)
        join(db_session, call, "buyer", provider=builtin, slots=slots, config=config, now=now)
        # The buyer's page stops reporting (its media stopped); the seller connects 20 s later.
        join(db_session, call, "seller", provider=builtin, slots=slots, config=config, now=now + timedelta(seconds=20))
        db_session.refresh(call)
        assert call.started_at is None
        # The buyer's media comes back while the seller's still flows: the clock starts then.
        back = now + timedelta(seconds=24)
        join(db_session, call, "buyer", provider=builtin, slots=slots, config=config, now=back)
        db_session.refresh(call)
        assert call.started_at == back

    def test_the_clock_starts_when_both_are_present(self, db_session, builtin, slots, config, enqueued) -> None:
        now = utcnow()
        call = accepted_call(now=now)

        first = join(db_session, call, "buyer", provider=builtin, slots=slots, config=config, now=now)
        assert (first["startedAt"], first["buyerPresent"], first["sellerPresent"]) == (None, True, False)

        later = now + timedelta(seconds=42)
        # The buyer's page keeps saying its media flows (a heartbeat every few seconds)...
        join(db_session, call, "buyer", provider=builtin, slots=slots, config=config, now=later - timedelta(seconds=4))
        # ... and the seller's media connects: the clock starts at that moment.
        second = join(db_session, call, "seller", provider=builtin, slots=slots, config=config, now=later)
        db_session.commit()

        db_session.refresh(call)
        assert call.started_at == later
        assert call.ends_at == later + timedelta(seconds=config.duration_seconds)
        assert (call.buyer_joined_at, call.seller_joined_at) == (now, later)
        assert second["startedAt"] == iso(later) and second["endsAt"] == iso(call.ends_at)
        assert [(name, args, options) for name, args, options in enqueued if name == "tasks.call_endings.end_call"] == [
            ("tasks.call_endings.end_call", (str(call.id),), {"eta": call.ends_at})
        ]

    def test_leaving_and_coming_back_does_not_restart_the_clock(
        self, db_session, builtin, slots, config, enqueued
    ) -> None:
        now = utcnow()
        call = accepted_call(now=now)
        join(db_session, call, "buyer", provider=builtin, slots=slots, config=config, now=now)
        join(db_session, call, "seller", provider=builtin, slots=slots, config=config, now=now)
        join(db_session, call, "buyer", provider=builtin, slots=slots, config=config, now=now, state="left")
        back = now + timedelta(seconds=60)
        state = join(db_session, call, "buyer", provider=builtin, slots=slots, config=config, now=back)
        db_session.commit()

        db_session.refresh(call)
        assert call.started_at == now
        assert state["startedAt"] == iso(now)
        assert call.buyer_joined_at == now  # the first join is kept
        assert enqueued.names().count("tasks.call_endings.end_call") == 1

    def test_one_party_twice_does_not_start_the_call(self, db_session, builtin, slots, config) -> None:
        call = accepted_call()
        join(db_session, call, "buyer", provider=builtin, slots=slots, config=config, now=utcnow())
        join(db_session, call, "buyer", provider=builtin, slots=slots, config=config, now=utcnow())
        db_session.refresh(call)
        assert call.started_at is None

    def test_after_the_end_nobody_joins(self, db_session, builtin, slots, config) -> None:
        now = utcnow()
        call = accepted_call(now=now)
        join(db_session, call, "buyer", provider=builtin, slots=slots, config=config, now=now)
        join(db_session, call, "seller", provider=builtin, slots=slots, config=config, now=now)
        late = now + timedelta(seconds=config.duration_seconds)
        with pytest.raises(Conflict) as refused:
            join(db_session, call, "buyer", provider=builtin, slots=slots, config=config, now=late)
        assert refused.value.code == "call_ended"

    def test_a_second_window_with_the_same_link_is_refused(self, db_session, builtin, slots, config) -> None:
        call = accepted_call()
        join(db_session, call, "buyer", provider=builtin, slots=slots, config=config, now=utcnow())
        with pytest.raises(Conflict) as refused:
            join(
                db_session,
                call,
                "buyer",
                provider=builtin,
                slots=slots,
                config=config,
                now=utcnow(),
                client="intruder-1",
            )
        assert refused.value.code == "in_use"

    def test_a_refused_window_leaving_does_not_remove_the_party(self, db_session, builtin, slots, config) -> None:
        call = accepted_call()
        join(db_session, call, "buyer", provider=builtin, slots=slots, config=config, now=utcnow())
        join(
            db_session,
            call,
            "buyer",
            provider=builtin,
            slots=slots,
            config=config,
            now=utcnow(),
            client="intruder-1",
            state="left",
        )
        db_session.refresh(call)
        assert call.buyer_present is True

    def test_no_presence_before_the_room_exists(self, db_session, builtin, slots, config) -> None:
        call = accepted_call(room=None)
        with pytest.raises(Conflict) as refused:
            join(db_session, call, "buyer", provider=builtin, slots=slots, config=config, now=utcnow())
        assert refused.value.code == "room_not_ready"

    def test_a_page_cannot_start_a_daily_call(self, db_session, daily, fake_daily, slots, config, enqueued) -> None:
        """For a Daily room the pages' reports are hints: Daily's own word starts the clock
        (tests/functional/test_daily_webhooks.py), so no page can bill a call Daily never saw."""
        now = utcnow()
        call = accepted_call(now=now, room="daily")
        for party in ("buyer", "seller"):
            join(db_session, call, party, provider=daily, slots=slots, config=config, now=now)
        db_session.commit()
        db_session.refresh(call)
        assert call.started_at is None
        assert (call.buyer_joined_at, call.seller_joined_at) == (None, None)  # Daily says who joined
        assert fake_daily.calls("POST", f"/v1/rooms/{call.room_name}") == []

    def test_join_gives_the_page_what_it_needs(self, db_session, builtin, slots, signaling, config) -> None:
        now = utcnow()
        call = accepted_call(now=now)
        answer = call_presence.join_call(
            db_session,
            access_for(db_session, call, "buyer"),
            provider=builtin,
            slots=slots,
            signaling=signaling,
            client_id="buyer-window-1",
            config=config,
            now=now,
        )
        assert answer["provider"] == "builtin"
        assert answer["roomUrl"] == call.room_url
        assert answer["durationSeconds"] == config.duration_seconds
        assert answer["startedAt"] is None and answer["endsAt"] is None
        assert answer["serverTime"] == iso(now)
        assert answer["iceServers"] == []
        assert "token" not in answer

    def test_join_gives_a_daily_token_for_the_party(
        self, db_session, daily, fake_daily, slots, signaling, config
    ) -> None:
        call = accepted_call(room="daily")
        answer = call_presence.join_call(
            db_session,
            access_for(db_session, call, "seller"),
            provider=daily,
            slots=slots,
            signaling=signaling,
            client_id="seller-window-1",
            config=config,
            now=utcnow(),
        )
        assert fake_daily.tokens[answer["token"]]["room_name"] == call.room_name
        assert fake_daily.tokens[answer["token"]]["is_owner"] is True
        assert fake_daily.tokens[answer["token"]]["user_name"] == "Ada Lovelace"


class TestConcurrentJoins:
    def test_two_parties_joining_at_once_start_the_clock_exactly_once(
        self, committed_db, builtin, redis, config
    ) -> None:
        call = accepted_call()
        committed_db.commit()
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []
        slots = PresenceSlots(redis, NAMESPACE)

        def arrive(party: str) -> None:
            session = db.new_session()
            try:
                access = access_for(session, call, party)
                barrier.wait()
                call_presence.report_presence(
                    session,
                    access,
                    "connected",
                    provider=builtin,
                    slots=slots,
                    client_id=f"{party}-window-1",
                    config=config,
                    now=utcnow(),
                )
                session.commit()
            except BaseException as error:  # reported by the main thread
                errors.append(error)
            finally:
                session.close()

        threads = [threading.Thread(target=arrive, args=(party,)) for party in ("buyer", "seller")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        assert errors == []
        fresh = committed_db.get(CallRequest, call.id, populate_existing=True)
        assert fresh.started_at is not None
        started = committed_db.scalar(select(func.count()).select_from(EventLog).where(EventLog.type == "call.started"))
        assert started == 1
