"""The live feed (app/live.py): versions and notices in real Redis, a bounded long-poll, and the
lifecycle announcing every change after commit (and nothing on rollback)."""

from __future__ import annotations

import socket
import threading
import time
import uuid

import pytest
import redis as redis_lib

from app import live
from app.db import utcnow
from app.models import RequestStatus
from app.refusals import Refusal
from app.services.lifecycle import decisions
from app.web.live import client_gone
from tests.factories import CallRequestFactory, ProfileFactory, TransactionFactory

FEEDS: list[live.LiveFeed] = []


@pytest.fixture
def namespace(redis):  # type: ignore[no-untyped-def]
    name = f"chatlink:test-live-{uuid.uuid4().hex[:8]}"
    yield name
    while FEEDS:
        FEEDS.pop().stop()
    for key in redis.scan_iter(f"{name}:*"):
        redis.delete(key)


def feed_on(redis, namespace: str, *, max_waiters: int = 4) -> live.LiveFeed:  # type: ignore[no-untyped-def]
    """A feed on its own connection pool, as another web process would have."""
    pool = redis.connection_pool  # a TCP or a unix-socket (embedded) connection, as the app's
    client = redis_lib.Redis(
        connection_pool=redis_lib.ConnectionPool(connection_class=pool.connection_class, **pool.connection_kwargs)
    )
    FEEDS.append(live.LiveFeed(client, namespace, max_waiters=max_waiters))
    return FEEDS[-1]


def wait_in_thread(feed: live.LiveFeed, channel: str, since: int, timeout: float) -> dict[str, object]:
    result: dict[str, object] = {}

    def run() -> None:
        started = time.monotonic()
        result["answer"] = feed.wait(channel, since, timeout=timeout)
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run)
    thread.start()
    result["thread"] = thread
    return result


class TestVersions:
    def test_publishing_bumps_each_channel_once(self, redis, namespace) -> None:
        feed = feed_on(redis, namespace)
        assert feed.version("seller:a") == 0
        feed.publish(["seller:a", "seller:a", "checkout:b"])
        assert (feed.version("seller:a"), feed.version("checkout:b")) == (1, 1)

    def test_a_page_behind_the_version_is_answered_at_once(self, redis, namespace) -> None:
        feed = feed_on(redis, namespace)
        feed.publish(["seller:a"])
        started = time.monotonic()
        answer = feed.wait("seller:a", 0, timeout=5)
        assert answer == live.Answer(1, True) and time.monotonic() - started < 0.5

    def test_nothing_new_answers_after_the_timeout(self, redis, namespace) -> None:
        answer = feed_on(redis, namespace).wait("seller:quiet", 0, timeout=0.3)
        assert answer == live.Answer(0, False)

    def test_the_checkout_channel_never_names_the_session_id(self) -> None:
        channel = live.checkout_channel("cs_test_secretish")
        assert "cs_test" not in channel and channel == live.checkout_channel("cs_test_secretish")


class TestAcrossProcesses:
    def test_a_change_published_elsewhere_wakes_the_waiter_at_once(self, redis, namespace) -> None:
        waiting_side, changing_side = feed_on(redis, namespace), feed_on(redis, namespace)
        result = wait_in_thread(waiting_side, "seller:x", 0, timeout=10)
        time.sleep(0.3)  # the waiter is subscribed and waiting
        changing_side.publish(["seller:x"])
        result["thread"].join(5)  # type: ignore[attr-defined]
        assert result["answer"] == live.Answer(1, True)
        assert 0.2 < result["seconds"] < 0.3 + live.RECHECK_SECONDS  # type: ignore[operator]

    def test_a_lost_notice_is_caught_by_the_recheck(self, redis, namespace) -> None:
        waiting_side = feed_on(redis, namespace)
        result = wait_in_thread(waiting_side, "seller:y", 0, timeout=10)
        time.sleep(0.2)
        redis.incr(f"{namespace}:live:v:seller:y")  # the version moves, but no PUBLISH is heard
        result["thread"].join(5)  # type: ignore[attr-defined]
        assert result["answer"] == live.Answer(1, True)
        assert result["seconds"] < 0.2 + live.RECHECK_SECONDS + 0.5  # type: ignore[operator]


class TestBound:
    def test_past_the_bound_a_long_poll_is_told_to_poll_instead(self, redis, namespace) -> None:
        feed = feed_on(redis, namespace, max_waiters=1)
        first = wait_in_thread(feed, "seller:busy", 0, timeout=2)
        time.sleep(0.2)
        started = time.monotonic()
        second = feed.wait("seller:busy", 0, timeout=5)
        assert second == live.Answer(0, False, retry_after=live.BUSY_RETRY_SECONDS)
        assert time.monotonic() - started < 0.5
        first["thread"].join(5)  # type: ignore[attr-defined]
        # Once the first is done, its slot is free again.
        assert feed.wait("seller:busy", 0, timeout=0.1).retry_after is None

    def test_a_waiter_whose_client_left_gives_its_slot_back_within_a_recheck(self, redis, namespace) -> None:
        """A page closed or left: its long-poll stops within a second instead of holding the
        process's only slot to the end of its 20 s wait, so the next page is served live."""
        feed = feed_on(redis, namespace, max_waiters=1)
        left = threading.Event()
        result: dict[str, object] = {}

        def run() -> None:
            started = time.monotonic()
            result["answer"] = feed.wait("seller:left", 0, timeout=20, gone=left.is_set)
            result["seconds"] = time.monotonic() - started

        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(0.2)
        assert feed.wait("seller:left", 0, timeout=0.1).retry_after == live.BUSY_RETRY_SECONDS
        left.set()
        thread.join(5)
        assert result["answer"] == live.Answer(0, False)
        assert result["seconds"] < 1 + 2 * live.RECHECK_SECONDS  # type: ignore[operator]
        assert feed.wait("seller:left", 0, timeout=0.1).retry_after is None

    def test_zero_waiters_turns_the_long_poll_off(self, redis, namespace) -> None:
        answer = feed_on(redis, namespace, max_waiters=0).wait("seller:off", 0, timeout=5)
        assert answer.retry_after == live.BUSY_RETRY_SECONDS


class TestLifecycleAnnounces:
    def channels_seen(self, monkeypatch) -> list[set[str]]:  # type: ignore[no-untyped-def]
        seen: list[set[str]] = []
        monkeypatch.setattr(live.feed(), "publish", lambda channels: seen.append(set(channels)))
        return seen

    def test_a_move_announces_to_the_seller_and_the_buyer_after_commit(self, db_session, monkeypatch) -> None:
        seen = self.channels_seen(monkeypatch)
        profile = ProfileFactory()
        call = CallRequestFactory(transaction=TransactionFactory(seller=profile.user))
        db_session.commit()
        seen.clear()
        decisions.decline_request(db_session, call.id, seller_id=profile.user_id, now=utcnow())
        assert seen == []  # nothing before the commit
        db_session.commit()
        assert seen == [
            {
                live.seller_channel(profile.user_id),
                live.checkout_channel(call.transaction.stripe_checkout_session_id),
            }
        ]

    def test_a_rolled_back_move_announces_nothing(self, db_session, monkeypatch) -> None:
        seen = self.channels_seen(monkeypatch)
        profile = ProfileFactory()
        call = CallRequestFactory(transaction=TransactionFactory(seller=profile.user))
        db_session.commit()
        seen.clear()
        decisions.accept_request(db_session, call.id, seller_id=profile.user_id, now=utcnow(), join_window_seconds=60)
        db_session.rollback()
        assert seen == []

    def test_a_move_that_lost_the_race_announces_nothing(self, db_session, monkeypatch) -> None:
        seen = self.channels_seen(monkeypatch)
        profile = ProfileFactory()
        call = CallRequestFactory(transaction=TransactionFactory(seller=profile.user), status=RequestStatus.DECLINED)
        db_session.commit()
        seen.clear()
        with pytest.raises(Refusal):
            decisions.accept_request(
                db_session, call.id, seller_id=profile.user_id, now=utcnow(), join_window_seconds=60
            )
        db_session.commit()
        assert seen == []

    def test_a_new_paid_request_is_announced(self, db_session, monkeypatch) -> None:
        seen = self.channels_seen(monkeypatch)
        profile = ProfileFactory()
        transaction = TransactionFactory(seller=profile.user)
        db_session.commit()
        seen.clear()
        decisions.open_request(
            db_session,
            seller_id=profile.user_id,
            transaction_id=transaction.id,
            buyer_email=transaction.buyer_email,
            note="",
            refused=None,
            request_ttl_seconds=60,
            now=utcnow(),
        )
        db_session.commit()
        assert seen and live.seller_channel(profile.user_id) in seen[0]


class TestClientGone:
    """``client_gone`` reads gunicorn's client socket: open and quiet, open with a request waiting
    behind, closed by the client."""

    def test_an_open_connection_is_not_gone(self) -> None:
        server, client = socket.socketpair()
        with server, client:
            assert client_gone({"gunicorn.socket": server})() is False
            client.sendall(b"GET / HTTP/1.1\r\n")  # bytes waiting are not an end of stream
            assert client_gone({"gunicorn.socket": server})() is False

    def test_a_closed_connection_is_gone(self) -> None:
        server, client = socket.socketpair()
        with server:
            client.close()
            assert client_gone({"gunicorn.socket": server})() is True

    def test_without_a_socket_the_client_is_never_gone(self) -> None:
        assert client_gone({})() is False
