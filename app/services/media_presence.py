"""Each party's connected intervals: the server's own measure of whether, and for how long, a call
really happened.

Two sources write them (``PresenceSource``), and a call reads only its own provider's:

* the built-in room's page (``page_connected`` / ``page_not_connected``): it reports ``connected``
  only while its RTCPeerConnection is connected and the other party's video plays, and repeats
  it at least every 5 s. An open page interval is *live* while its last heartbeat is under
  ``STALE`` old; a page that stops reporting (closed, crashed, offline) stops counting at its last
  heartbeat, and its next report opens a new interval.
* Daily (``daily_joined`` / ``daily_left`` / ``daily_meeting_ended`` from its webhooks, or
  ``daily_seen`` / ``daily_close_unseen`` from its REST presence polled by the worker). Each Daily
  participant session is one row, UNIQUE per call, so redelivered or reordered events land once:
  a ``left`` before its ``joined`` makes the whole closed interval, and the late ``joined`` then
  changes nothing.

``first_overlap`` says when both were first connected (the clock starts then) and
``connected_seconds`` how long both were connected within a stretch of time (an early end is
settled by it). Intervals are rows, not Redis keys: a settlement after a restart reads the same.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.formats import iso
from app.models import CallRequest, PresenceInterval, PresenceSource

PARTIES = ("buyer", "seller")
# A page heartbeats at least every 5 s: past two missed beats its media no longer counts.
STALE = timedelta(seconds=12)

Span = tuple[datetime, datetime]


def source_for(call: CallRequest) -> PresenceSource:
    """Whose word counts for this call: Daily's for a Daily room, the page's for the built-in one."""
    return PresenceSource.DAILY if call.video_provider == "daily" else PresenceSource.PAGE


# --- The built-in room's pages ---------------------------------------------------------------


def page_connected(session: Session, call_id: uuid.UUID, party: str, client_id: str, now: datetime) -> None:
    """The page of ``client_id`` says its media flows: extend its live interval, or open one."""
    open_page = _open(call_id, party, PresenceSource.PAGE)
    extended = session.execute(
        update(PresenceInterval)
        .where(
            *open_page,
            PresenceInterval.last_seen_at >= now - STALE,
            PresenceInterval.session_key.startswith(f"{client_id}:", autoescape=True),
        )
        .values(last_seen_at=func.greatest(PresenceInterval.last_seen_at, now))
        .returning(PresenceInterval.id)
        .execution_options(synchronize_session=False)
    ).first()
    if extended is not None:
        return
    # A stale interval, or another window's, ends where it was last seen to flow.
    page_not_connected(session, call_id, party, now)
    session.execute(
        insert(PresenceInterval)
        .values(
            id=uuid.uuid4(),
            call_request_id=call_id,
            party=party,
            source=PresenceSource.PAGE,
            session_key=f"{client_id}:{uuid.uuid4().hex[:12]}",
            started_at=now,
            last_seen_at=now,
            created_at=now,
        )
        .on_conflict_do_nothing()  # a concurrent heartbeat opened it: that one counts
    )


def page_not_connected(session: Session, call_id: uuid.UUID, party: str, now: datetime) -> None:
    """The page says its media does not flow (or it left): its open interval ends now, or at its
    last heartbeat if that is already stale."""
    live = PresenceInterval.last_seen_at >= now - STALE
    session.execute(
        update(PresenceInterval)
        .where(*_open(call_id, party, PresenceSource.PAGE))
        .values(ended_at=case((live, now), else_=PresenceInterval.last_seen_at))
        .execution_options(synchronize_session=False)
    )


# --- Daily -----------------------------------------------------------------------------------


def daily_joined(session: Session, call_id: uuid.UUID, party: str, session_key: str, joined_at: datetime) -> None:
    """Daily says a participant session of ``party`` joined at ``joined_at``."""
    session.execute(
        insert(PresenceInterval)
        .values(_daily_row(call_id, party, session_key, joined_at))
        .on_conflict_do_nothing(constraint="uq_presence_intervals_session")
    )


def daily_left(
    session: Session, call_id: uuid.UUID, party: str, session_key: str, joined_at: datetime, left_at: datetime
) -> None:
    """Daily says that session left at ``left_at`` (its ``joined_at`` plus its ``duration``)."""
    statement = insert(PresenceInterval).values(
        _daily_row(call_id, party, session_key, joined_at) | {"ended_at": max(left_at, joined_at)}
    )
    session.execute(
        statement.on_conflict_do_update(
            constraint="uq_presence_intervals_session",
            set_={"ended_at": func.greatest(statement.excluded.ended_at, PresenceInterval.started_at)},
            where=PresenceInterval.ended_at.is_(None),
        )
    )


def daily_meeting_ended(session: Session, call_id: uuid.UUID, ended_at: datetime) -> None:
    """The meeting is over: every session still open ends with it."""
    session.execute(
        update(PresenceInterval)
        .where(
            PresenceInterval.call_request_id == call_id,
            PresenceInterval.source == PresenceSource.DAILY,
            PresenceInterval.ended_at.is_(None),
        )
        .values(ended_at=func.greatest(PresenceInterval.started_at, ended_at))
        .execution_options(synchronize_session=False)
    )


def daily_seen(
    session: Session, call_id: uuid.UUID, party: str, session_key: str, joined_at: datetime, now: datetime
) -> None:
    """Daily's presence lists this session now (the polling fallback)."""
    statement = insert(PresenceInterval).values(
        _daily_row(call_id, party, session_key, min(joined_at, now)) | {"last_seen_at": now}
    )
    session.execute(
        statement.on_conflict_do_update(
            constraint="uq_presence_intervals_session",
            set_={"last_seen_at": now},
            where=PresenceInterval.ended_at.is_(None),
        )
    )


def daily_close_unseen(session: Session, call_id: uuid.UUID, seen: Iterable[str], now: datetime) -> None:
    """Sessions Daily's presence no longer lists have left: they end where they were last seen."""
    session.execute(
        update(PresenceInterval)
        .where(
            PresenceInterval.call_request_id == call_id,
            PresenceInterval.source == PresenceSource.DAILY,
            PresenceInterval.ended_at.is_(None),
            PresenceInterval.session_key.not_in(list(seen)),
        )
        .values(ended_at=func.coalesce(PresenceInterval.last_seen_at, now))
        .execution_options(synchronize_session=False)
    )


# --- Reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spans:
    """Each party's connected spans, as known at ``at`` (open intervals counted up to it)."""

    buyer: list[Span]
    seller: list[Span]

    def of(self, party: str) -> list[Span]:
        return self.buyer if party == "buyer" else self.seller


def spans(session: Session, call_id: uuid.UUID, source: PresenceSource, at: datetime) -> Spans:
    rows = session.scalars(
        select(PresenceInterval)
        .where(PresenceInterval.call_request_id == call_id, PresenceInterval.source == source)
        .order_by(PresenceInterval.started_at)
    )
    found: dict[str, list[Span]] = {party: [] for party in PARTIES}
    for row in rows:
        end = min(_effective_end(row, at), at)
        if row.party in found and end >= row.started_at:
            found[row.party].append((row.started_at, end))
    return Spans(buyer=found["buyer"], seller=found["seller"])


def first_overlap(both: Spans) -> datetime | None:
    """The first moment both parties were connected, or None if they never were together."""
    moments = [
        max(buyer[0], seller[0])
        for buyer in both.buyer
        for seller in both.seller
        if max(buyer[0], seller[0]) <= min(buyer[1], seller[1])
    ]
    return min(moments, default=None)


def connected_seconds(both: Spans, start: datetime, end: datetime) -> int:
    """Whole seconds within [start, end] during which both parties were connected (rounded down)."""
    together = _intersect(_union(both.buyer), _union(both.seller))
    total = sum(
        (min(e, end) - max(s, start) for s, e in together if min(e, end) > max(s, start)),
        timedelta(0),
    )
    return int(total.total_seconds())


def intervals_as_facts(session: Session, call_id: uuid.UUID, source: PresenceSource, at: datetime) -> dict[str, Any]:
    """Each party's spans as ISO pairs, for a problem case's facts."""
    both = spans(session, call_id, source, at)
    return {
        "source": source.value,
        **{party: [[iso(s), iso(e)] for s, e in both.of(party)] for party in PARTIES},
    }


def _open(call_id: uuid.UUID, party: str, source: PresenceSource) -> tuple[Any, ...]:
    return (
        PresenceInterval.call_request_id == call_id,
        PresenceInterval.party == party,
        PresenceInterval.source == source,
        PresenceInterval.ended_at.is_(None),
    )


def _daily_row(call_id: uuid.UUID, party: str, session_key: str, joined_at: datetime) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "call_request_id": call_id,
        "party": party,
        "source": PresenceSource.DAILY,
        "session_key": session_key[:100],
        "started_at": joined_at,
        "created_at": joined_at,
    }


def _effective_end(row: PresenceInterval, at: datetime) -> datetime:
    if row.ended_at is not None:
        return row.ended_at
    if row.source == PresenceSource.PAGE:
        seen = row.last_seen_at or row.started_at
        return at if seen >= at - STALE else seen
    return at  # Daily's sessions are open until Daily says they left


def _union(items: list[Span]) -> list[Span]:
    merged: list[Span] = []
    for start, end in sorted(items):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _intersect(left: list[Span], right: list[Span]) -> list[Span]:
    found = []
    for a_start, a_end in left:
        for b_start, b_end in right:
            start, end = max(a_start, b_start), min(a_end, b_end)
            if start < end:
                found.append((start, end))
    return found
