"""The call after accept: join credentials, access, the room, and the call's state.

A party's credential is the ``t`` of ``/call/<id>?t=...``: base64url(HMAC-SHA256(SECRET_KEY,
"<id>:<party>:<join_key>")). It is bound to the call and the party, unguessable without the
secret, revoked by rotating ``join_key``, and it stops opening the call once the call can no
longer happen (ended, cancelled, or the join window passed without a start).

The room is made once the payment is captured (``provision_room``, from the capture task), with
a name derived from the secret and the call, so a retry finds the room the first try made.
Presence and the start of the clock are in ``app/services/call_presence.py``; the end and the
no-shows in ``app/services/call_endings.py``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.formats import call_length, format_when, iso
from app.integrations.video import VideoError, VideoProvider
from app.models import CallRequest, PaymentState, Profile, RequestStatus
from app.queue import RetryLater
from app.refusals import Conflict, Forbidden
from app.services import settlement_text
from app.services.audit import record_event
from app.services.lifecycle import load_request, require_request
from app.services.lifecycle.notices import email_context
from app.services.outbox import queue_email

log = logging.getLogger(__name__)

PARTIES = ("buyer", "seller")
FINAL_STATUSES = (RequestStatus.COMPLETED, RequestStatus.CANCELLED)
PROBLEM_WINDOW = timedelta(hours=48)
# Daily's room outlives the join window by the call's length plus this, so a call started at the
# last moment still has its room; at start the room's exp moves to the call's own end.
ROOM_GRACE_SECONDS = 120
MAX_TOKEN_LENGTH = 128
SYSTEM = "system"


DENIED = {
    "invalid": "This call link is not valid. Use the link from your email or your dashboard.",
    "expired": "This call link has expired: the time to join has passed.",
}


class AccessDenied(Forbidden):
    """The credential does not open this call: ``invalid`` (wrong call, wrong party, forged) or
    ``expired`` (the join window passed without a start)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"{reason}_credential", DENIED[reason])
        self.reason = reason


@dataclass(frozen=True)
class CallConfig:
    """The settings the call needs, as plain values."""

    secret_key: str
    app_url: str
    duration_seconds: int
    ice_servers: tuple[dict[str, Any], ...] = ()
    # A seller's early end under this many connected seconds refunds the buyer in full.
    early_end_minimum_seconds: int = 60

    @classmethod
    def from_settings(cls, settings: Settings) -> CallConfig:
        return cls(
            settings.secret_key,
            settings.app_url,
            settings.call_duration_seconds,
            settings.webrtc_ice_servers,
            settings.early_end_minimum_seconds,
        )


@dataclass(frozen=True)
class CallAccess:
    call: CallRequest
    party: str
    ended: bool  # the credential was right, but the call is over (or never took place)


# Credentials.


def join_token(secret_key: str, request: CallRequest, party: str) -> str:
    if party not in PARTIES or not request.join_key:
        raise ValueError("a join token needs a party and an accepted request")
    message = f"{request.id}:{party}:{request.join_key}".encode()
    digest = hmac.new(secret_key.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def join_url(app_url: str, secret_key: str, request: CallRequest, party: str) -> str | None:
    """``{app_url}/call/<id>?t=<token>``, or None before the request is accepted."""
    if not request.join_key:
        return None
    return f"{app_url.rstrip('/')}/call/{request.id}?t={join_token(secret_key, request, party)}"


def rate_url(app_url: str, secret_key: str, call: CallRequest) -> str:
    """The buyer's "how was your call?" link; the rating page checks the buyer's token."""
    return f"{app_url.rstrip('/')}/rate/{call.id}?t={join_token(secret_key, call, 'buyer')}"


def problem_url(app_url: str, secret_key: str, call: CallRequest, party: str) -> str | None:
    """A party's "report a problem with this call" link (their own credential), or None before
    the request was accepted."""
    if not call.join_key:
        return None
    return f"{app_url.rstrip('/')}/call/{call.id}/problem?t={join_token(secret_key, call, party)}"


def party_for_token(secret_key: str, request: CallRequest, token: str) -> str | None:
    if not request.join_key or not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    given = token.encode("utf-8", "replace")
    found = None
    for party in PARTIES:
        # Compare against both parties every time, in constant time, so timing tells nothing.
        if hmac.compare_digest(join_token(secret_key, request, party).encode(), given):
            found = party
    return found


def check_access(session: Session, request_id: str, token: str, *, secret_key: str, now: datetime) -> CallAccess:
    """Who this credential is, for this call, now. Raises ``AccessDenied``."""
    call = load_request(session, _parse_id(request_id))
    party = party_for_token(secret_key, call, token) if call is not None else None
    if call is None or party is None:
        raise AccessDenied("invalid")
    if call.status in (RequestStatus.COMPLETED, RequestStatus.CANCELLED):
        return CallAccess(call, party, ended=True)
    if call.status != RequestStatus.ACCEPTED:
        raise AccessDenied("invalid")
    if call.started_at is None and call.join_deadline is not None and now >= call.join_deadline:
        raise AccessDenied("expired")
    # Past ends_at the call is over even if the end has not been recorded yet.
    overdue = call.ends_at is not None and now >= call.ends_at
    return CallAccess(call, party, ended=overdue)


@dataclass(frozen=True)
class CallPage:
    access: CallAccess
    other_name: str  # "Waiting for <other_name>"


def open_call_page(session: Session, request_id: str, token: str, *, secret_key: str, now: datetime) -> CallPage:
    """What ``/call/<id>?t=`` shows. Raises ``AccessDenied``."""
    access = check_access(session, request_id, token, secret_key=secret_key, now=now)
    other_name = party_names(session, access.call)["seller"] if access.party == "buyer" else "your buyer"
    return CallPage(access, other_name)


# The room.


def room_name_for(secret_key: str, call: CallRequest) -> str:
    """Unguessable (keyed with the secret) and deterministic, so a retried creation names the
    same room and finds the one the first attempt made."""
    digest = hmac.new(secret_key.encode(), f"room:{call.id}:{call.join_key}".encode(), hashlib.sha256).digest()
    return "cl-" + base64.urlsafe_b64encode(digest[:24]).rstrip(b"=").decode()


def room_expiry(call: CallRequest, duration_seconds: int) -> datetime:
    assert call.join_deadline is not None
    return call.join_deadline + timedelta(seconds=duration_seconds + ROOM_GRACE_SECONDS)


def provision_room(
    session: Session, request_id: uuid.UUID, *, provider: VideoProvider, config: CallConfig, now: datetime
) -> str:
    """Create the room of an ACCEPTED, paid request and send the buyer their link.

    Returns ``created``, ``exists`` (already done: a repeat is a no-op), ``not_yet`` (a call
    accepted for later whose room does not open yet) or ``skipped`` (not accepted, not captured,
    or too late for a call to happen).
    """
    call = load_request(session, request_id)
    if call is None or call.status != RequestStatus.ACCEPTED or call.join_deadline is None:
        return "skipped"
    if call.room_ready_at is not None:
        return "exists"
    if call.transaction.payment_state != PaymentState.CAPTURED or now >= call.join_deadline:
        return "skipped"
    if call.join_opens_at is not None and now < call.join_opens_at:
        # A call accepted for later: its room is made when it opens (the page or the sweep).
        return "not_yet"
    try:
        room = provider.create_room(
            name=room_name_for(config.secret_key, call),
            request_id=str(call.id),
            expires_at=room_expiry(call, config.duration_seconds),
        )
    except VideoError as error:
        if error.transient:
            raise RetryLater(str(error)) from error
        raise
    won = session.execute(
        update(CallRequest)
        .where(CallRequest.id == call.id, CallRequest.status == RequestStatus.ACCEPTED)
        .where(CallRequest.room_ready_at.is_(None))
        .values(video_provider=provider.name, room_name=room.name, room_url=room.url, room_ready_at=now, updated_at=now)
        .returning(CallRequest.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if won is None:
        return "exists"
    record_event(session, "call.room_ready", ref_id=call.id, actor=SYSTEM, payload={"provider": provider.name})
    if call.scheduled_start is not None:
        return "created"  # its invitation and reminders carry the join link
    context = email_context(session, call) | {
        "join_url": join_url(config.app_url, config.secret_key, call, "buyer"),
        "join_deadline": iso(call.join_deadline),
        # In the buyer's own zone when they gave one at checkout, and always with the zone said.
        "join_deadline_text": format_when(call.join_deadline, call.buyer_time_zone or "UTC"),
        "call_length": call_length(config.duration_seconds),
    }
    queue_email(
        session,
        recipient=call.buyer_email,
        template="call_ready_buyer",
        context=context,
        dedupe_key=f"call_ready:buyer:{call.id}",
    )
    return "created"


def prepare_room(
    session: Session, access: CallAccess, *, provider: VideoProvider, config: CallConfig, now: datetime
) -> dict[str, Any]:
    """``POST /api/video/create``: make sure the room exists (the page calls it first; the task
    normally did it already). Repeat-safe."""
    _require_open(access)
    opens = access.call.join_opens_at
    if opens is not None and now < opens:
        raise Conflict("not_open", "The room is not open yet: it opens a few minutes before the start.")
    if access.call.room_ready_at is None:
        try:
            provision_room(session, access.call.id, provider=provider, config=config, now=now)
        except (RetryLater, VideoError) as error:
            # The task keeps trying on its own schedule; the page asks again in a moment.
            log.warning("room not ready at create", extra={"request_id": str(access.call.id)})
            raise Conflict("room_not_ready", "The room is not ready yet. Trying again...") from error
        access = CallAccess(require_request(session, access.call.id), access.party, access.ended)
    if access.call.room_ready_at is None:
        raise Conflict("room_not_ready", "The room is not ready yet. Trying again...")
    state = call_state(access.call, now, party=access.party)
    return {"provider": access.call.video_provider, "roomUrl": access.call.room_url, **state}


# Reading.


def call_state(call: CallRequest, now: datetime, *, party: str | None = None) -> dict[str, Any]:
    """The call as the page sees it. Once it is over and settled, ``party``'s page also gets what
    happened and what it means for their money (``outcome``), and whether a problem can still be
    reported."""
    state: dict[str, Any] = {
        "status": call.status.value.lower(),
        "cancelReason": call.cancel_reason.value if call.cancel_reason else None,
        "startedAt": iso(call.started_at),
        "endsAt": iso(call.ends_at),
        "joinDeadline": iso(call.join_deadline),
        "buyerPresent": call.buyer_present,
        "sellerPresent": call.seller_present,
        "serverTime": iso(now),
    }
    settled = call.settlement if call.status in FINAL_STATUSES else None
    if party in PARTIES and settled is not None:
        state |= {
            "endedBy": call.ended_by,
            "outcome": settlement_text.describe(call, settled, party),
            "problemReportOpen": problem_window_open(call, now),
        }
    return state


def after_the_call(
    call: CallRequest, party: str, *, app_url: str, secret_key: str, now: datetime
) -> dict[str, str | None]:
    """``outcome`` (``party``'s sentence on a settled call) and ``problem_url`` (their "report a
    problem" link while they may still use it), for pages outside the call: the buyer's status
    page. Empty before the call is settled."""
    settled = call.settlement if call.status in FINAL_STATUSES else None
    if settled is None:
        return {}
    link = problem_url(app_url, secret_key, call, party) if problem_window_open(call, now) else None
    return {"outcome": settlement_text.describe(call, settled, party), "problem_url": link}


def ended_at(call: CallRequest) -> datetime | None:
    """When the call was over: its end, or the cancellation of a call that did not happen."""
    return call.ended_at or call.cancelled_at


def problem_window_open(call: CallRequest, now: datetime) -> bool:
    """A party may report a problem with an accepted call that is over, for 48 hours after."""
    over = ended_at(call)
    settled = call.status in FINAL_STATUSES and call.settlement is not None  # it reached the room
    return settled and over is not None and now < over + PROBLEM_WINDOW


def schedule_state(call: CallRequest) -> dict[str, Any]:
    """A call booked for later, as its parties' API sees it (``/api/calls/<id>/...``)."""
    return {
        "id": str(call.id),
        "status": call.status.value.lower(),
        "cancelReason": call.cancel_reason.value if call.cancel_reason else None,
        "scheduledStart": iso(call.scheduled_start),
        "joinOpensAt": iso(call.join_opens_at),
        "joinDeadline": iso(call.join_deadline),
        "reschedule": None
        if call.reschedule_start is None
        else {
            "startAt": iso(call.reschedule_start),
            "askedBy": call.reschedule_by,
            "answered": call.reschedule_answered_at is not None,
        },
    }


def party_names(session: Session, call: CallRequest) -> dict[str, str]:
    """How each party is named in the room (Daily shows it under their picture). The buyer is
    just "Buyer": their email never leaves ChatLink."""
    seller_name = session.scalar(select(Profile.display_name).where(Profile.user_id == call.seller_id))
    return {"seller": seller_name or "The seller", "buyer": "Buyer"}


def _require_open(access: CallAccess) -> None:
    if access.ended:
        raise Conflict("call_ended", "This call has ended.")


def _parse_id(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
