"""Each party's connected intervals: the page's heartbeats, Daily's sessions, when both were first
together and for how long, and Daily's webhook signature checked as Daily signs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.db import utcnow
from app.integrations import daily_webhooks
from app.models import PresenceInterval, PresenceSource
from app.services import media_presence
from app.services.media_presence import Spans, connected_seconds, first_overlap
from tests.call_helpers import accepted_call

SECRET = base64.b64encode(b"a secret only Daily and we know").decode()


def seconds(n: float):  # type: ignore[no-untyped-def]
    return T0 + timedelta(seconds=n)


T0 = utcnow().replace(microsecond=0)


class TestArithmetic:
    def test_together_from_the_later_start_for_the_overlap_only(self) -> None:
        both = Spans(
            buyer=[(seconds(0), seconds(60)), (seconds(90), seconds(200))], seller=[(seconds(30), seconds(150))]
        )
        assert first_overlap(both) == seconds(30)
        assert connected_seconds(both, seconds(30), seconds(150)) == 30 + 60
        assert connected_seconds(both, seconds(100), seconds(120)) == 20

    def test_never_together(self) -> None:
        both = Spans(buyer=[(seconds(0), seconds(10))], seller=[(seconds(11), seconds(20))])
        assert first_overlap(both) is None
        assert connected_seconds(both, seconds(0), seconds(20)) == 0

    def test_overlapping_spans_of_one_party_count_once(self) -> None:
        both = Spans(buyer=[(seconds(0), seconds(50)), (seconds(40), seconds(80))], seller=[(seconds(0), seconds(100))])
        assert connected_seconds(both, seconds(0), seconds(100)) == 80


class TestPageHeartbeats:
    def test_a_live_page_extends_its_interval_and_a_stale_one_starts_another(self, db_session) -> None:
        call = accepted_call()
        for beat in (0, 4, 8):
            media_presence.page_connected(db_session, call.id, "buyer", "window-a", seconds(beat))
        media_presence.page_connected(db_session, call.id, "buyer", "window-a", seconds(30))  # 22 s of silence
        rows = db_session.scalars(select(PresenceInterval).order_by(PresenceInterval.started_at)).all()
        assert [(r.started_at, r.ended_at, r.last_seen_at) for r in rows] == [
            (seconds(0), seconds(8), seconds(8)),
            (seconds(30), None, seconds(30)),
        ]

    def test_a_page_saying_joined_ends_its_interval_now(self, db_session) -> None:
        call = accepted_call()
        media_presence.page_connected(db_session, call.id, "seller", "window-a", seconds(0))
        media_presence.page_connected(db_session, call.id, "seller", "window-a", seconds(4))
        media_presence.page_not_connected(db_session, call.id, "seller", seconds(6))
        [row] = db_session.scalars(select(PresenceInterval))
        assert (row.started_at, row.ended_at) == (seconds(0), seconds(6))

    def test_an_open_interval_counts_only_while_its_heartbeat_is_recent(self, db_session) -> None:
        call = accepted_call()
        media_presence.page_connected(db_session, call.id, "buyer", "window-a", seconds(0))
        assert media_presence.spans(db_session, call.id, PresenceSource.PAGE, seconds(10)).buyer == [
            (seconds(0), seconds(10))
        ]
        assert media_presence.spans(db_session, call.id, PresenceSource.PAGE, seconds(60)).buyer == [
            (seconds(0), seconds(0))
        ]

    def test_another_window_of_the_party_takes_over(self, db_session) -> None:
        call = accepted_call()
        media_presence.page_connected(db_session, call.id, "buyer", "window-a", seconds(0))
        media_presence.page_connected(db_session, call.id, "buyer", "window-b", seconds(3))
        rows = db_session.scalars(select(PresenceInterval).order_by(PresenceInterval.started_at)).all()
        assert [(r.ended_at, r.session_key.split(":")[0]) for r in rows] == [
            (seconds(3), "window-a"),
            (None, "window-b"),
        ]


class TestDailySessions:
    def test_a_left_before_its_joined_lands_once(self, db_session) -> None:
        call = accepted_call(room="daily")
        media_presence.daily_left(db_session, call.id, "buyer", "s-1", seconds(0), seconds(40))
        media_presence.daily_joined(db_session, call.id, "buyer", "s-1", seconds(0))
        media_presence.daily_left(db_session, call.id, "buyer", "s-1", seconds(0), seconds(40))
        [row] = db_session.scalars(select(PresenceInterval))
        assert (row.source, row.started_at, row.ended_at) == (PresenceSource.DAILY, seconds(0), seconds(40))


class TestDailySignature:
    def sign(self, body: bytes, stamp: str, secret: str = SECRET) -> str:
        key = base64.b64decode(secret)
        return base64.b64encode(hmac.new(key, stamp.encode() + b"." + body, hashlib.sha256).digest()).decode()

    def test_exactly_as_daily_signs(self) -> None:
        body, stamp = b'{"type":"participant.joined"}', str(int(time.time()))
        assert daily_webhooks.sign(body, SECRET, stamp) == self.sign(body, stamp)
        daily_webhooks.verify(body, self.sign(body, stamp), stamp, SECRET, now=time.time())

    @pytest.mark.parametrize(
        "mutate",
        [
            lambda body, sig, stamp: (body + b" ", sig, stamp),
            lambda body, sig, stamp: (body, sig, str(int(stamp) - 301)),
            lambda body, sig, stamp: (body, None, stamp),
            lambda body, sig, stamp: (body, sig, None),
            lambda body, sig, stamp: (body, sig, "yesterday"),
            lambda body, sig, stamp: (body, sig[:-4] + "AAA=", stamp),
        ],
    )
    def test_anything_else_is_refused(self, mutate) -> None:  # type: ignore[no-untyped-def]
        body, stamp = b'{"type":"participant.joined"}', str(int(time.time()))
        body, signature, stamp = mutate(body, self.sign(body, stamp), stamp)
        with pytest.raises(daily_webhooks.InvalidSignature):
            daily_webhooks.verify(body, signature, stamp, SECRET, now=time.time())

    def test_a_key_used_as_text_instead_of_decoded_is_not_dailys(self) -> None:
        body, stamp = b"{}", str(int(time.time()))
        as_text = base64.b64encode(hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).digest())
        with pytest.raises(daily_webhooks.InvalidSignature):
            daily_webhooks.verify(body, as_text.decode(), stamp, SECRET, now=time.time())
