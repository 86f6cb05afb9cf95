"""The built-in room's signaling mailbox and presence slots, on the real Redis."""

from __future__ import annotations

import json
import uuid

import pytest
import redis as redis_lib

from app.refusals import Refusal
from app.services.signaling import (
    MAX_MESSAGES,
    PresenceSlots,
    Signaling,
    other_party,
    validate_message,
)
from tests.conftest import RUN_ID

NAMESPACE = f"chatlink:test-{RUN_ID}"  # the redis fixture cleans this prefix up


@pytest.fixture
def signaling(redis) -> Signaling:
    return Signaling(redis, NAMESPACE)


@pytest.fixture
def slots(redis) -> PresenceSlots:
    return PresenceSlots(redis, NAMESPACE, ttl_seconds=20)


@pytest.fixture
def call_id() -> str:
    return str(uuid.uuid4())


def offer(sender: str = "seller-client-1", **extra: object) -> dict:
    return {"type": "offer", "from": sender, "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n", **extra}


class TestMailbox:
    def test_a_message_reaches_the_other_party_only(self, signaling, call_id) -> None:
        signaling.send(call_id, "seller", offer())

        for_buyer, _ = signaling.poll(call_id, "buyer", None)
        for_seller, _ = signaling.poll(call_id, "seller", None)
        assert [m["type"] for m in for_buyer] == ["offer"]
        assert for_buyer[0]["from"] == "seller-client-1"
        assert for_seller == []

    def test_messages_come_in_order_and_the_cursor_is_exclusive(self, signaling, call_id) -> None:
        ids = [
            signaling.send(call_id, "buyer", {"type": "candidate", "from": "buyer-client-1", "candidate": {"n": n}})
            for n in range(3)
        ]

        first, cursor = signaling.poll(call_id, "seller", None)
        assert [m["candidate"]["n"] for m in first] == [0, 1, 2]
        assert [m["id"] for m in first] == ids
        assert cursor == ids[-1]

        again, same_cursor = signaling.poll(call_id, "seller", cursor)
        assert again == []
        assert same_cursor == cursor  # nothing new: poll again from the same place

        signaling.send(call_id, "buyer", {"type": "bye", "from": "buyer-client-1"})
        later, _ = signaling.poll(call_id, "seller", cursor)
        assert [m["type"] for m in later] == ["bye"]

    def test_a_lost_answer_loses_nothing(self, signaling, call_id) -> None:
        signaling.send(call_id, "seller", offer())
        signaling.poll(call_id, "buyer", None)  # the response never reached the page
        retried, _ = signaling.poll(call_id, "buyer", None)
        assert [m["type"] for m in retried] == ["offer"]

    def test_calls_do_not_share_mailboxes(self, signaling, call_id) -> None:
        signaling.send(call_id, "seller", offer())
        assert signaling.poll(str(uuid.uuid4()), "buyer", None) == ([], None)

    def test_any_web_process_sees_the_same_mailbox(self, signaling, settings, call_id) -> None:
        # A second, independent connection stands for another gunicorn worker or machine.
        other_process = redis_lib.Redis.from_url(settings.redis_url, decode_responses=True)
        try:
            Signaling(other_process, NAMESPACE).send(call_id, "seller", offer())
            messages, _ = signaling.poll(call_id, "buyer", None)
        finally:
            other_process.close()
        assert [m["type"] for m in messages] == ["offer"]

    def test_mailboxes_expire_and_stay_bounded(self, signaling, redis, call_id) -> None:
        for n in range(MAX_MESSAGES + 25):
            signaling.send(call_id, "seller", {"type": "candidate", "from": "seller-client-1", "candidate": {"n": n}})
        key = f"{NAMESPACE}:signal:{call_id}:buyer"
        assert 0 < redis.ttl(key) <= signaling.ttl_seconds
        assert redis.xlen(key) == MAX_MESSAGES
        messages, _ = signaling.poll(call_id, "buyer", None)
        assert messages[0]["candidate"]["n"] == 25  # the oldest were dropped

    def test_a_new_page_starts_after_what_was_waiting(self, signaling, call_id) -> None:
        assert signaling.cursor(call_id, "buyer") is None
        signaling.send(call_id, "seller", offer())  # meant for a window that has since closed
        cursor = signaling.cursor(call_id, "buyer")
        assert signaling.poll(call_id, "buyer", cursor)[0] == []

    def test_a_cursor_must_look_like_a_message_id(self, signaling, call_id) -> None:
        with pytest.raises(Refusal):
            signaling.poll(call_id, "buyer", "0) OR 1")

    def test_clear_removes_both_mailboxes(self, signaling, call_id) -> None:
        signaling.send(call_id, "seller", offer())
        signaling.send(call_id, "buyer", {"type": "hello", "from": "buyer-client-1"})
        signaling.clear(call_id)
        assert signaling.poll(call_id, "buyer", None) == ([], None)
        assert signaling.poll(call_id, "seller", None) == ([], None)


class TestValidation:
    def test_keeps_only_what_a_peer_needs(self) -> None:
        kept = validate_message({**offer(), "to": "buyer-client-9", "evil": "<script>"})
        assert set(kept) == {"type", "from", "to", "sdp"}

    @pytest.mark.parametrize(
        "message",
        [
            None,
            "offer",
            {"type": "exec", "from": "client-123"},
            {"type": "offer"},  # no sender
            {"type": "offer", "from": "short"},
            {"type": "offer", "from": "client-123", "to": "bad id with spaces"},
            {"type": "offer", "from": "client-123", "sdp": "x" * 40_000},
        ],
    )
    def test_refuses_anything_else(self, message) -> None:
        with pytest.raises(Refusal):
            validate_message(message)

    def test_the_largest_real_sdp_fits(self) -> None:
        sdp = "a=candidate:1 1 udp 2122260223 127.0.0.1 54321 typ host\r\n" * 150
        assert len(json.dumps(validate_message(offer(sdp=sdp)))) < 32_768

    def test_other_party(self) -> None:
        assert (other_party("buyer"), other_party("seller")) == ("seller", "buyer")


class TestPresenceSlots:
    def test_one_window_per_party(self, slots, call_id) -> None:
        assert slots.claim(call_id, "buyer", "window-aaaa") is True
        assert slots.claim(call_id, "buyer", "window-aaaa") is True  # refreshing its own slot
        assert slots.claim(call_id, "buyer", "window-bbbb") is False  # a second window, a third person
        assert slots.claim(call_id, "seller", "window-bbbb") is True  # the other party is separate
        assert slots.holder(call_id, "buyer") == "window-aaaa"

    def test_leaving_frees_the_slot_for_the_next_window(self, slots, call_id) -> None:
        slots.claim(call_id, "buyer", "window-aaaa")
        assert slots.release(call_id, "buyer", "window-bbbb") is False  # not its slot: nothing happens
        assert slots.holder(call_id, "buyer") == "window-aaaa"
        assert slots.release(call_id, "buyer", "window-aaaa") is True
        assert slots.claim(call_id, "buyer", "window-bbbb") is True

    def test_a_crashed_window_lets_go_after_the_ttl(self, slots, redis, call_id) -> None:
        slots.claim(call_id, "buyer", "window-aaaa")
        key = f"{NAMESPACE}:slot:{call_id}:buyer"
        assert 0 < redis.ttl(key) <= 20
        redis.delete(key)  # what the TTL does after 20 s without a refresh
        assert slots.claim(call_id, "buyer", "window-bbbb") is True

    def test_releasing_a_free_slot_is_allowed(self, slots, call_id) -> None:
        assert slots.release(call_id, "seller", "window-aaaa") is True
