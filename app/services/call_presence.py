"""Joining the call and presence: who is in the room, whose media flows, and the start of the clock.

Each window of a party holds that party's presence slot (``PresenceSlots``) while it is open; a
second window with the same link is refused. The page reports ``joined`` when its user enters,
``connected`` while media flows both ways (at least every 5 s; both keep the slot) and ``left``
when they leave or close the tab. "Joined" shows who is in the room and decides the no-show
rules; only connected media starts the clock: the first time both parties' media is connected
together (``media_presence``; for a Daily room, as Daily says it), ``lifecycle.clock`` starts it
(``ends_at = started_at + CALL_DURATION_SECONDS``, the end scheduled after commit) and Daily's room
is told to expire at ``ends_at``, so the provider ends the call on time even if every worker is down.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.orm import Session

from app.db import on_commit
from app.integrations.video import VideoError, VideoProvider
from app.models import CallRequest, PresenceSource, RequestStatus
from app.queue import RetryLater, enqueue_now
from app.refusals import Conflict
from app.services import media_presence
from app.services.calls import CallAccess, CallConfig, call_state, party_names, room_expiry
from app.services.lifecycle import clock, load_request, require_request
from app.services.signaling import PresenceSlots, Signaling
from tasks import call_presence as presence_tasks

log = logging.getLogger(__name__)


def join_call(
    session: Session,
    access: CallAccess,
    *,
    provider: VideoProvider,
    slots: PresenceSlots,
    signaling: Signaling,
    client_id: str,
    config: CallConfig,
    now: datetime,
) -> dict[str, Any]:
    """``POST /api/video/join``: what the page needs to enter the room, for one window."""
    call = _require_room(access)
    call_id = str(call.id)
    if not slots.claim(call_id, access.party, client_id):
        raise Conflict("in_use", "This link is already open in another window. Close it, then try again.")
    answer: dict[str, Any] = {"provider": call.video_provider, "roomUrl": call.room_url, "party": access.party}
    if call.video_provider == provider.name:
        try:
            token = provider.join_credential(
                call.room_name or "",
                party=access.party,
                user_name=party_names(session, call)[access.party],
                expires_at=room_expiry(call, config.duration_seconds),
            )
        except VideoError as error:
            raise Conflict("room_not_ready", "The video service did not answer. Trying again...") from error
        if token is not None:
            answer["token"] = token
    if call.video_provider == "builtin":
        answer["iceServers"] = list(config.ice_servers)
        answer["signalCursor"] = signaling.cursor(call_id, access.party)
    return answer | {"durationSeconds": config.duration_seconds, **call_state(call, now, party=access.party)}


def report_presence(
    session: Session,
    access: CallAccess,
    state: str,
    *,
    provider: VideoProvider,
    slots: PresenceSlots,
    client_id: str,
    config: CallConfig,
    now: datetime,
) -> dict[str, Any]:
    """``POST /api/video/presence``: ``joined`` (in the room, media not flowing), ``connected``
    (media flows both ways: the built-in room's page sends it only while its peer connection is
    connected and the other party's video plays, at least every 5 s) or ``left``. Each report
    keeps the window's slot. For the built-in room, the first time both parties' media has been
    connected together the clock starts; for a Daily room the page's word is only a hint, and
    Daily's own webhooks (or its polled presence) decide."""
    call_id = str(access.call.id)
    if state == "left":
        if slots.release(call_id, access.party, client_id):
            _set_present(session, access, False, now)
            media_presence.page_not_connected(session, access.call.id, access.party, now)
        return call_state(require_request(session, access.call.id), now, party=access.party)
    call = _require_room(access)
    if not slots.claim(call_id, access.party, client_id):
        raise Conflict("in_use", "This link is already open in another window.")
    if not _set_present(session, access, True, now):
        raise Conflict("call_ended", "This call has ended.")
    if media_presence.source_for(call) == PresenceSource.PAGE:
        if state == "connected":
            media_presence.page_connected(session, call.id, access.party, client_id, now)
        else:
            media_presence.page_not_connected(session, call.id, access.party, now)
        ends_at = clock.start_when_connected(session, call.id, now=now, duration_seconds=config.duration_seconds)
        if ends_at is not None:
            after_start(call, ends_at, provider, session)
    return call_state(require_request(session, call.id), now, party=access.party)


def _set_present(session: Session, access: CallAccess, present: bool, now: datetime) -> bool:
    flag = CallRequest.buyer_present if access.party == "buyer" else CallRequest.seller_present
    first_join = CallRequest.buyer_joined_at if access.party == "buyer" else CallRequest.seller_joined_at
    values: dict[Any, Any] = {flag: present}
    conditions = [CallRequest.id == access.call.id, CallRequest.status == RequestStatus.ACCEPTED]
    if present:
        if access.call.video_provider != "daily":
            # Who joined decides the no-show rules. For a Daily room Daily says it (daily_events),
            # not the page: a buyer cannot turn their own no-show into a refund by posting "joined".
            values[first_join] = func.coalesce(first_join, now)  # the first join is kept
        # Joining is possible until the end, or until the join deadline for a call not started.
        conditions.append(
            (CallRequest.ends_at > now) | (CallRequest.started_at.is_(None) & (CallRequest.join_deadline > now))
        )
    statement = (
        update(CallRequest)
        .where(*conditions)
        .values(values)
        .returning(CallRequest.id)
        .execution_options(synchronize_session=False)
    )
    return session.execute(statement).scalar_one_or_none() is not None


def after_start(call: CallRequest, ends_at: datetime, provider: VideoProvider, session: Session) -> None:
    """Move Daily's room ``exp`` to ``ends_at``, from the web process itself, right after commit,
    so that Daily ends the call on time even when no worker is running; a task takes over if Daily
    does not answer."""
    if call.video_provider != provider.name or provider.name == "builtin":
        return
    room_name = call.room_name or ""
    call_id = str(call.id)

    def move_room_expiry() -> None:
        try:
            provider.start(room_name, ends_at=ends_at)
        except Exception:
            log.warning("could not move the room's exp; a task will retry", extra={"request_id": call_id})
            enqueue_now(presence_tasks.start_room, call_id)

    on_commit(session, move_room_expiry)


def start_room(session: Session, request_id: uuid.UUID, *, provider: VideoProvider) -> str:
    """Task side of ``after_start``: move the provider room's expiry to ``ends_at``."""
    call = load_request(session, request_id)
    if call is None or call.ends_at is None or call.status != RequestStatus.ACCEPTED or not call.room_name:
        return "skipped"
    if call.video_provider != provider.name:
        return "skipped"
    try:
        provider.start(call.room_name, ends_at=call.ends_at)
    except VideoError as error:
        if error.transient:
            raise RetryLater(str(error)) from error
        raise
    return "moved"


def _require_room(access: CallAccess) -> CallRequest:
    if access.ended:
        raise Conflict("call_ended", "This call has ended.")
    if access.call.room_ready_at is None or not access.call.room_name:
        raise Conflict("room_not_ready", "The room is not ready yet. Trying again...")
    return access.call
