"""Daily as the authority on who is in a Daily room: its webhooks (an inbox like Stripe's), or its
REST presence polled by the worker where no webhook is configured.

The webhook view verifies Daily's signature on the raw body (``app.integrations.daily_webhooks``),
stores the event here (``record_event``: INSERT ... ON CONFLICT DO NOTHING on Daily's event id, so
a redelivery is a no-op), commits, and only then publishes ``process_event``. Processing locks the
row, and a row already processed is skipped.

What the events do: ``participant.joined`` opens the party's connected interval (the meeting
token's ``user_id`` is the party) and records their first join; ``participant.left`` closes it at
``joined_at + duration``; ``meeting.ended`` closes whatever is still open. Each Daily session is
one interval row, UNIQUE per call, so duplicates and any order of delivery end the same. After
each event the clock starts if both parties' intervals overlap (``lifecycle.clock``), at the
moment they first did. Events for rooms that are not ours (Daily sends every room of the domain)
or for participants that are neither party are stored as ``ignored``.

A page's own ``connected`` report is only a hint for a Daily room: it never starts the clock.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Connection, Select, Uuid, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import on_commit, utcnow
from app.integrations.video import DailyVideo, VideoError
from app.models import CallRequest, DailyEvent, DailyEventStatus, RequestStatus
from app.queue import enqueue_after_commit, enqueue_now
from app.services import media_presence
from app.services.lifecycle import clock
from app.services.sweeping import Moment, looks_for
from tasks import call_presence as presence_tasks
from tasks import daily_events as daily_event_tasks

log = logging.getLogger(__name__)

PARTIES = ("buyer", "seller")
REQUEUE_AFTER = timedelta(seconds=60)
MAX_REQUEUES = 10
REQUEUE_BATCH = 200

Outcome = tuple[DailyEventStatus, str | None]
PROCESSED, IGNORED = DailyEventStatus.PROCESSED, DailyEventStatus.IGNORED

_INSERT_EVENT = text(
    "INSERT INTO daily_events (id, daily_event_id, type, payload, status, attempts, received_at)"
    " VALUES (:id, :daily_event_id, :type, :payload, :status, 0, :received_at)"
    " ON CONFLICT (daily_event_id) DO NOTHING RETURNING id"
).bindparams(bindparam("id", type_=Uuid()), bindparam("payload", type_=JSONB()))


# --- The inbox -----------------------------------------------------------------------------------


def record_event(connection: Session | Connection, event: dict[str, Any]) -> uuid.UUID | None:
    """Store a verified event: its row id, or None for a redelivery. The caller publishes
    ``publish_processing(row_id)`` once the row is committed."""
    return connection.execute(
        _INSERT_EVENT,
        {
            "id": uuid.uuid4(),
            "daily_event_id": str(event["id"])[:255],
            "type": str(event.get("type", ""))[:100],
            "payload": event,
            "status": DailyEventStatus.RECEIVED.value,
            "received_at": utcnow(),
        },
    ).scalar_one_or_none()


def publish_processing(row_id: uuid.UUID) -> None:
    """Hand a committed row to a worker; if the broker refuses, the sweep publishes it later."""
    enqueue_now(daily_event_tasks.process_daily_event, str(row_id))


def process_event(
    session: Session, row_id: uuid.UUID, *, duration_seconds: int, now: datetime
) -> DailyEventStatus | None:
    """Run the handler of one inbox event; None when it was already handled."""
    row = session.execute(select(DailyEvent).where(DailyEvent.id == row_id).with_for_update()).scalar_one_or_none()
    if row is None or row.status != DailyEventStatus.RECEIVED:
        return None
    handler = HANDLERS.get(row.type)
    payload = row.payload.get("payload")
    note: str | None
    if handler is None:
        status, note = IGNORED, "unhandled event type"
    elif not isinstance(payload, dict):
        status, note = IGNORED, "no payload"
    else:
        status, note = handler(session, payload, duration_seconds, now)
    row.status, row.error, row.processed_at = status, note, now
    log.info("daily event", extra={"event_id": row.daily_event_id, "type": row.type, "outcome": status.value})
    return status


def _stuck(now: Moment) -> Select[tuple[DailyEvent]]:
    return select(DailyEvent).where(
        DailyEvent.status == DailyEventStatus.RECEIVED, DailyEvent.received_at < now - REQUEUE_AFTER
    )


@looks_for(lambda now: _stuck(now).exists())
def requeue_stuck_events(session: Session, now: datetime, settings: Settings) -> dict[str, int]:
    """Sweep step: publish again the events still RECEIVED a minute after they arrived, backing
    off per event, and give up (FAILED, for an operator) after MAX_REQUEUES."""
    rows = session.execute(
        _stuck(now).order_by(DailyEvent.received_at).limit(REQUEUE_BATCH).with_for_update(skip_locked=True)
    ).scalars()
    requeued = failed = 0
    for row in rows:
        if row.received_at > now - REQUEUE_AFTER * 2 ** min(row.attempts, MAX_REQUEUES):
            continue
        if row.attempts >= MAX_REQUEUES:
            row.status, row.error, row.processed_at = DailyEventStatus.FAILED, "never processed", now
            failed += 1
            continue
        row.attempts += 1
        enqueue_after_commit(session, daily_event_tasks.process_daily_event, str(row.id))
        requeued += 1
    return {"daily_inbox_requeued": requeued, "daily_inbox_failed": failed}


# --- Handlers ------------------------------------------------------------------------------------


def handle_participant_joined(session: Session, payload: dict[str, Any], duration: int, now: datetime) -> Outcome:
    found = _participant(session, payload)
    if isinstance(found, str):
        return IGNORED, found
    call, party, session_key, joined_at = found
    media_presence.daily_joined(session, call.id, party, session_key, joined_at)
    _first_join(session, call.id, party, joined_at)
    _maybe_start(session, call.id, duration, now)
    return PROCESSED, None


def handle_participant_left(session: Session, payload: dict[str, Any], duration: int, now: datetime) -> Outcome:
    found = _participant(session, payload)
    if isinstance(found, str):
        return IGNORED, found
    call, party, session_key, joined_at = found
    stayed = _number(payload.get("duration")) or 0.0
    media_presence.daily_left(session, call.id, party, session_key, joined_at, joined_at + timedelta(seconds=stayed))
    _first_join(session, call.id, party, joined_at)
    # A "left" that arrives before its "joined" still proves the two were together meanwhile.
    _maybe_start(session, call.id, duration, now)
    return PROCESSED, None


def handle_meeting_ended(session: Session, payload: dict[str, Any], duration: int, now: datetime) -> Outcome:
    call = _our_call(session, payload)
    if call is None:
        return IGNORED, "not our room"
    ended = _moment(payload.get("end_ts")) or now
    media_presence.daily_meeting_ended(session, call.id, ended)
    return PROCESSED, None


HANDLERS: dict[str, Callable[[Session, dict[str, Any], int, datetime], Outcome]] = {
    "participant.joined": handle_participant_joined,
    "participant.left": handle_participant_left,
    "meeting.ended": handle_meeting_ended,
}


# --- Without webhooks: Daily's presence, polled --------------------------------------------------


def poll_presence(session: Session, provider: DailyVideo, *, duration_seconds: int, now: datetime) -> dict[str, int]:
    """Read who is in every room now (one request) and record it for our live Daily calls: a
    listed session is connected (``daily_seen``), one no longer listed has left. Only calls that
    can still start or are running are looked at; nothing is asked of Daily when there are none."""
    live = list(
        session.execute(
            select(CallRequest.id, CallRequest.room_name).where(
                CallRequest.status == RequestStatus.ACCEPTED,
                CallRequest.video_provider == "daily",
                CallRequest.room_name.is_not(None),
                CallRequest.room_ready_at.is_not(None),
                (CallRequest.ends_at > now) | (CallRequest.started_at.is_(None) & (CallRequest.join_deadline > now)),
            )
        )
    )
    if not live:
        return {"daily_calls_polled": 0}
    try:
        rooms = provider.presence()
    except VideoError as error:
        log.warning("daily presence unavailable", extra={"status": error.status})
        return {"daily_calls_polled": 0}
    started = 0
    for call_id, room_name in live:
        seen = []
        for person in rooms.get(room_name or "", []):
            party, joined_at = person.get("userId"), _iso_moment(person.get("joinTime"))
            if party in PARTIES and joined_at is not None and isinstance(person.get("id"), str):
                media_presence.daily_seen(session, call_id, party, person["id"], joined_at, now)
                _first_join(session, call_id, party, joined_at)
                seen.append(person["id"])
        media_presence.daily_close_unseen(session, call_id, seen, now)
        started += _maybe_start(session, call_id, duration_seconds, now)
    return {"daily_calls_polled": len(live), "daily_calls_started": started}


# --- Internals -----------------------------------------------------------------------------------


def _our_call(session: Session, payload: dict[str, Any]) -> CallRequest | None:
    room = payload.get("room") or payload.get("room_name")
    if not isinstance(room, str) or not room:
        return None
    return session.scalar(
        select(CallRequest).where(CallRequest.room_name == room, CallRequest.video_provider == "daily")
    )


def _participant(session: Session, payload: dict[str, Any]) -> tuple[CallRequest, str, str, datetime] | str:
    """(call, party, Daily session id, joined at), or why the event is not for us."""
    call = _our_call(session, payload)
    if call is None:
        return "not our room"
    party, session_key = payload.get("user_id"), payload.get("session_id")
    joined_at = _moment(payload.get("joined_at"))
    if party not in PARTIES:
        return "not a party of the call"
    if not isinstance(session_key, str) or not session_key or joined_at is None:
        return "malformed participant"
    return call, str(party), session_key, joined_at


def _first_join(session: Session, call_id: uuid.UUID, party: str, joined_at: datetime) -> None:
    """Daily's word on who joined, for the no-show rules (the earliest join is kept)."""
    column = CallRequest.buyer_joined_at if party == "buyer" else CallRequest.seller_joined_at
    session.execute(
        update(CallRequest)
        .where(CallRequest.id == call_id, CallRequest.status == RequestStatus.ACCEPTED)
        .values({column: func.least(func.coalesce(column, joined_at), joined_at)})
        .execution_options(synchronize_session=False)
    )


def _maybe_start(session: Session, call_id: uuid.UUID, duration_seconds: int, now: datetime) -> int:
    ends_at = clock.start_when_connected(session, call_id, now=now, duration_seconds=duration_seconds)
    if ends_at is None:
        return 0
    # Daily is told to eject both at ends_at, by a task after commit (this runs in a worker).
    enqueue_after_commit(session, presence_tasks.start_room, str(call_id))
    on_commit(session, partial(log.info, "daily call started", extra={"request_id": str(call_id)}))
    return 1


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _moment(value: object) -> datetime | None:
    """Daily's unix seconds (sometimes with a fraction) as an aware datetime."""
    seconds = _number(value)
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _iso_moment(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
