"""Live pages: a change to a call request reaches the other party's open page in about a second,
whichever web process serves that page and whichever process (web or worker) made the change.

**Publishing.** The lifecycle (``app.services.lifecycle``) names the channels a move concerns (the
seller's, the buyer's checkout) and calls ``announce_after_commit``; once the transaction commits,
each channel's version is incremented in Redis and the channel is published on one Redis pub/sub
channel. A rollback announces nothing, so a page never refreshes to a state that did not happen.

**Waiting: a bounded long-poll, not Server-Sent Events.** Gunicorn runs a few threads per process
(8 in the README's command) and an open SSE stream holds one of them for as long as the page is
open: eight sellers leaving their dashboard open would take a whole process. A long-poll holds a
thread for at most ``WAIT_SECONDS`` and only while fewer than ``LIVE_WAITERS`` requests of that
process are waiting; past that bound the endpoint answers at once with ``retryAfter`` and the page
polls every few seconds instead. So live updates can never take more than that many threads of a
process, and the others always serve ordinary requests. A page that is closed or left gives its
place back within a second (the waiter sees its client's socket closed), not at the end of its wait.

A page is rendered with the version of its channel read BEFORE its data: a change committed after
that read bumps the version past it, so the page's first wait returns at once. Each process has one
listener thread subscribed to the pub/sub channel that wakes the waiters of its process; a waiter
also re-reads the version every ``RECHECK_SECONDS``, so a lost message or a listener reconnecting
costs at most that much delay, never an update.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

import redis
from sqlalchemy.orm import Session

from app.db import on_commit_collect

log = logging.getLogger(__name__)

WAIT_SECONDS = 20.0  # under nginx's and browsers' idle timeouts, with room to spare
RECHECK_SECONDS = 1.0
BUSY_RETRY_SECONDS = 3
VERSION_TTL_SECONDS = 7 * 86400  # a page left open longer than this reloads once, harmlessly


def _never() -> bool:
    return False


def seller_channel(seller_id: uuid.UUID) -> str:
    return f"seller:{seller_id}"


def checkout_channel(checkout_session_id: str) -> str:
    """The buyer's channel. A digest of the Checkout Session id, so the id (which shows in Stripe's
    dashboard and in URLs) is never a Redis key name anyone could list."""
    return "checkout:" + hashlib.sha256(checkout_session_id.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Answer:
    version: int
    changed: bool
    retry_after: int | None = None  # seconds: the process is at its bound, poll instead

    def to_json(self) -> dict[str, object]:
        answer: dict[str, object] = {"version": self.version, "changed": self.changed}
        if self.retry_after is not None:
            answer["retryAfter"] = self.retry_after
        return answer


class LiveFeed:
    """Versions and notifications of live channels, in Redis under ``namespace``."""

    # The feeds whose listener thread has started in this process (``stop_all``).
    _listening: ClassVar[weakref.WeakSet[LiveFeed]] = weakref.WeakSet()

    def __init__(self, client: redis.Redis, namespace: str, *, max_waiters: int) -> None:
        self.client = client
        self.namespace = namespace
        self.topic = f"{namespace}:live"
        self.max_waiters = max_waiters
        self._condition = threading.Condition()
        self._heard: dict[str, int] = {}
        self._waiting: collections.Counter[str] = collections.Counter()
        self._slots = threading.BoundedSemaphore(max_waiters)
        self._listener: threading.Thread | None = None
        self._listener_pid = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def _key(self, channel: str) -> str:
        return f"{self.namespace}:live:v:{channel}"

    # --- Publishing ----------------------------------------------------------------------------

    def publish(self, channels: Iterable[str]) -> None:
        """Bump each channel's version and tell every listening process. Never raises: a page that
        misses this notice still has its meta refresh and its next long-poll."""
        try:
            pipe = self.client.pipeline(transaction=False)
            names = sorted(set(channels))
            for channel in names:
                pipe.incr(self._key(channel))
                pipe.expire(self._key(channel), VERSION_TTL_SECONDS)
            results = pipe.execute()
            pipe = self.client.pipeline(transaction=False)
            for channel, version in zip(names, results[::2], strict=True):
                pipe.publish(self.topic, f"{channel} {version}")
            pipe.execute()
        except redis.RedisError:
            log.warning("could not publish a live update", exc_info=True)

    # --- Waiting -------------------------------------------------------------------------------

    def version(self, channel: str) -> int:
        """The channel's current version (0 when nothing happened yet, or Redis is down)."""
        try:
            value = self.client.get(self._key(channel))
        except redis.RedisError:
            return 0
        return int(str(value)) if value is not None else 0

    def wait(
        self, channel: str, since: int, *, timeout: float = WAIT_SECONDS, gone: Callable[[], bool] = _never
    ) -> Answer:
        """Return as soon as the channel's version differs from ``since`` (a change), or after
        ``timeout`` seconds, or once ``gone()`` says the client left (checked every
        ``RECHECK_SECONDS``: a closed page gives its slot back instead of holding it to the end).
        Answers at once with ``retry_after`` when this process already has ``max_waiters``
        requests waiting."""
        current = self.version(channel)
        if current != since:
            return Answer(current, True)
        if not self._slots.acquire(blocking=False):
            return Answer(current, False, retry_after=BUSY_RETRY_SECONDS)
        try:
            self._ensure_listener()
            return self._wait(channel, since, time.monotonic() + timeout, gone)
        finally:
            self._slots.release()

    def _wait(self, channel: str, since: int, deadline: float, gone: Callable[[], bool]) -> Answer:
        with self._condition:
            self._waiting[channel] += 1
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                with self._condition:
                    notified = self._condition.wait(min(remaining, RECHECK_SECONDS))
                    heard = self._heard.get(channel)
                if heard is not None and heard != since:
                    return Answer(heard, True)
                if not notified:
                    current = self.version(channel)  # the safety net: a message lost or late
                    if current != since:
                        return Answer(current, True)
                    if gone():
                        break
            return Answer(since, False)
        finally:
            with self._condition:
                self._waiting[channel] -= 1
                if self._waiting[channel] <= 0:
                    del self._waiting[channel]
                    self._heard.pop(channel, None)

    def _ensure_listener(self) -> None:
        """One listener thread per process, started on first use (after gunicorn forked)."""
        with self._lock:
            if self._listener is not None and self._listener.is_alive() and self._listener_pid == os.getpid():
                return
            self._listener_pid = os.getpid()
            self._listener = threading.Thread(target=self._listen, name="chatlink-live", daemon=True)
            self._listener.start()
            LiveFeed._listening.add(self)

    def stop(self) -> None:
        """End this process's listener (tests, and an app being torn down), waiting for it to let
        go of Redis."""
        self._stopped.set()
        listener = self._listener
        if listener is not None and listener is not threading.current_thread():
            listener.join(timeout=2 * RECHECK_SECONDS)

    @classmethod
    def stop_all(cls) -> None:
        """End every feed's listener in this process: a test run's, before its Redis goes away."""
        for feed in list(cls._listening):
            feed.stop()

    def _listen(self) -> None:
        while not self._stopped.is_set():
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]  # redis-py leaves pubsub() unannotated
                pubsub.subscribe(self.topic)
                try:
                    while not self._stopped.is_set():
                        message = pubsub.get_message(timeout=RECHECK_SECONDS)
                        if message is not None:
                            self._heard_message(str(message.get("data", "")))
                finally:
                    pubsub.close()
            except Exception:
                if self._stopped.is_set():
                    break
                # Waiters fall back to re-reading versions meanwhile; reconnect calmly.
                log.warning("live listener lost Redis; reconnecting", exc_info=True)
                time.sleep(1)

    def _heard_message(self, data: str) -> None:
        channel, _, version = data.partition(" ")
        if not version.isdigit():
            return
        with self._condition:
            if channel in self._waiting:
                self._heard[channel] = int(version)
                self._condition.notify_all()


_feed: LiveFeed | None = None


def configure(feed: LiveFeed) -> None:
    """Called by ``create_app()``: the feed every service announces to in this process."""
    global _feed
    _feed = feed


def enabled() -> bool:
    return _feed is not None


def feed() -> LiveFeed:
    if _feed is None:
        raise RuntimeError("app.live.configure() was not called (create_app does it)")
    return _feed


def announce_after_commit(session: Session, channels: Iterable[str]) -> None:
    """Publish a change of these channels once the transaction commits (nothing on rollback).
    Everything one transaction announces goes out in one publish."""
    if _feed is None:
        return
    for channel in channels:
        on_commit_collect(session, "live", channel, lambda names: feed().publish(str(name) for name in names))
