"""The Daily adapter against a local fake Daily (``DAILY_API_BASE``): the exact room and token
properties, the ``exp`` move at start, the deletion at the end, retries and timeouts."""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from app.integrations.video import BuiltinVideo, DailyVideo, VideoError, unix_seconds, video_provider
from tests.fakes.daily_api import FakeDaily

EXPIRES = datetime(2026, 11, 25, 12, 30, 15, 250000, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[FakeDaily]:
    with FakeDaily(api_key="daily-key") as server:
        yield server


@pytest.fixture
def daily(fake: FakeDaily) -> DailyVideo:
    return DailyVideo("daily-key", fake.url, backoff_factor=0.01, backoff_max=0.05)


class TestRooms:
    def test_creates_a_private_two_person_room_that_expires_and_ejects(self, daily, fake) -> None:
        room = daily.create_room(name="cl-abc_DEF-123", request_id="r1", expires_at=EXPIRES)

        assert room.name == "cl-abc_DEF-123"
        assert room.url == "https://chatlink-test.daily.co/cl-abc_DEF-123"
        [call] = fake.calls("POST", "/v1/rooms")
        assert call.headers["Authorization"] == "Bearer daily-key"
        assert call.json == {
            "name": "cl-abc_DEF-123",
            "privacy": "private",
            "properties": {
                "exp": math.ceil(EXPIRES.timestamp()),
                "eject_at_room_exp": True,
                "max_participants": 2,
                "enable_prejoin_ui": True,
            },
        }

    def test_never_enables_recording_or_per_participant_ejection(self, daily, fake) -> None:
        daily.create_room(name="cl-one", request_id="r1", expires_at=EXPIRES)
        daily.start("cl-one", ends_at=EXPIRES)
        daily.join_credential("cl-one", party="seller", user_name="Ada", expires_at=EXPIRES)

        for request in fake.requests:
            properties = (request.json or {}).get("properties", {})
            assert "enable_recording" not in properties
            # It counts from each participant's own join: it would cut off whoever came first.
            assert "eject_after_elapsed" not in properties

    def test_a_retried_creation_finds_the_room_the_first_attempt_made(self, daily, fake) -> None:
        first = daily.create_room(name="cl-again", request_id="r1", expires_at=EXPIRES)
        second = daily.create_room(name="cl-again", request_id="r1", expires_at=EXPIRES)

        assert second == first
        assert [r.method for r in fake.requests] == ["POST", "POST", "GET"]
        assert len(fake.rooms) == 1

    def test_refuses_a_name_daily_would_refuse(self, daily, fake) -> None:
        with pytest.raises(ValueError):
            daily.create_room(name="no spaces/or slashes", request_id="r1", expires_at=EXPIRES)
        assert fake.requests == []


class TestTokens:
    def test_a_token_is_scoped_to_the_room_and_names_the_party(self, daily, fake) -> None:
        token = daily.join_credential("cl-room", party="buyer", user_name="Buyer", expires_at=EXPIRES)

        assert fake.tokens[token] == {
            "room_name": "cl-room",
            "user_name": "Buyer",
            "user_id": "buyer",
            "is_owner": False,
            "exp": math.ceil(EXPIRES.timestamp()),
        }

    def test_only_the_seller_owns_the_room(self, daily, fake) -> None:
        token = daily.join_credential("cl-room", party="seller", user_name="Ada Lovelace", expires_at=EXPIRES)
        assert fake.tokens[token]["is_owner"] is True
        assert fake.tokens[token]["user_name"] == "Ada Lovelace"

    def test_an_unknown_party_gets_no_token(self, daily, fake) -> None:
        with pytest.raises(ValueError):
            daily.join_credential("cl-room", party="admin", user_name="x", expires_at=EXPIRES)
        assert fake.requests == []


class TestStartAndEnd:
    def test_start_moves_the_room_exp_to_the_end_of_the_call(self, daily, fake) -> None:
        daily.create_room(name="cl-live", request_id="r1", expires_at=EXPIRES)
        ends_at = datetime(2026, 11, 25, 12, 5, 0, 1, tzinfo=UTC)

        daily.start("cl-live", ends_at=ends_at)

        [update] = fake.calls("POST", "/v1/rooms/cl-live")
        # Rounded up: Daily must never eject before our own clock says the call is over.
        assert update.json == {"properties": {"exp": unix_seconds(ends_at), "eject_at_room_exp": True}}
        assert unix_seconds(ends_at) == math.floor(ends_at.timestamp()) + 1
        assert fake.rooms["cl-live"]["config"]["exp"] == unix_seconds(ends_at)

    def test_end_deletes_the_room(self, daily, fake) -> None:
        daily.create_room(name="cl-done", request_id="r1", expires_at=EXPIRES)
        daily.end("cl-done")
        assert "cl-done" not in fake.rooms
        assert [r.path for r in fake.calls("DELETE")] == ["/v1/rooms/cl-done"]

    def test_a_room_already_gone_counts_as_deleted(self, daily, fake) -> None:
        daily.end("cl-never-existed")  # 404: no error
        assert len(fake.calls("DELETE")) == 1


class TestRetries:
    @pytest.mark.parametrize("statuses", [(429,), (503,), (500, 502), (429, 504, 503)])
    def test_retries_429_and_5xx_with_backoff_then_succeeds(self, daily, fake, statuses) -> None:
        fake.fail_next(*statuses)
        room = daily.create_room(name="cl-retry", request_id="r1", expires_at=EXPIRES)
        assert room.name == "cl-retry"
        assert len(fake.requests) == len(statuses) + 1

    def test_delete_is_retried_too(self, daily, fake) -> None:
        daily.create_room(name="cl-del", request_id="r1", expires_at=EXPIRES)
        fake.fail_next(503, 429)
        daily.end("cl-del")
        assert len(fake.calls("DELETE")) == 3
        assert "cl-del" not in fake.rooms

    def test_gives_up_after_the_retries_with_a_transient_error(self, daily, fake) -> None:
        fake.fail_next(503, 503, 503, 503, 503)
        with pytest.raises(VideoError) as raised:
            daily.end("cl-any")
        assert raised.value.transient is True
        assert raised.value.status == 503
        assert len(fake.requests) == 4  # the first attempt and three retries

    @pytest.mark.parametrize("status", [400, 401, 403])
    def test_a_refusal_is_permanent_and_not_retried(self, daily, fake, status) -> None:
        fake.fail_next(status)
        with pytest.raises(VideoError) as raised:
            daily.start("cl-any", ends_at=EXPIRES)
        assert raised.value.transient is False
        assert len(fake.requests) == 1

    def test_a_wrong_api_key_is_a_permanent_error(self, fake) -> None:
        wrong = DailyVideo("not-the-key", fake.url, backoff_factor=0.01)
        with pytest.raises(VideoError) as raised:
            wrong.create_room(name="cl-x", request_id="r1", expires_at=EXPIRES)
        assert (raised.value.status, raised.value.transient) == (401, False)


class TestTimeouts:
    def test_a_slow_answer_times_out_as_a_transient_error(self, fake) -> None:
        impatient = DailyVideo("daily-key", fake.url, timeout=(1.0, 0.2), retries=0)
        fake.stall_next(1.0)
        with pytest.raises(VideoError) as raised:
            impatient.end("cl-slow")
        assert raised.value.transient is True

    def test_an_unreachable_daily_is_a_transient_error(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]  # closed again before the call: nothing listens there
        unreachable = DailyVideo("daily-key", f"http://127.0.0.1:{port}/v1", retries=1, backoff_factor=0.01)
        with pytest.raises(VideoError) as raised:
            unreachable.end("cl-any")
        assert raised.value.transient is True


class TestChoice:
    def test_daily_when_a_key_is_set(self, settings, fake) -> None:
        provider = video_provider(settings.replace(daily_api_key="daily-key", daily_api_base=fake.url))
        assert isinstance(provider, DailyVideo)
        assert provider.api_base == fake.url
        # One adapter (and connection pool) per key and address.
        assert video_provider(settings.replace(daily_api_key="daily-key", daily_api_base=fake.url)) is provider

    def test_web_requests_get_a_quicker_adapter(self, settings, fake) -> None:
        configured = settings.replace(daily_api_key="daily-key", daily_api_base=fake.url)
        quick = video_provider(configured, interactive=True)
        assert quick is not video_provider(configured)
        fake.fail_next(503, 503, 503)
        with pytest.raises(VideoError):
            quick.end("cl-any")
        assert len(fake.requests) == 2  # one retry only: the page (or a task) tries again later
        assert quick.timeout == (2.0, 4.0)

    def test_the_built_in_room_otherwise(self, settings) -> None:
        provider = video_provider(settings)
        assert isinstance(provider, BuiltinVideo)
        room = provider.create_room(name="cl-x", request_id="abc", expires_at=EXPIRES + timedelta(hours=1))
        assert room.url == f"{settings.app_url}/call/abc"
        assert provider.join_credential("cl-x", party="buyer", user_name="B", expires_at=EXPIRES) is None
