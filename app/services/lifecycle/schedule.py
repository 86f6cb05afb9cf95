"""A call accepted for a later time: one reschedule, the buyer's cancellation, the reminders.

Each function is one move of the table (``table.py``) made by one conditional UPDATE, with its
audit row, tasks and emails together; a repeat, or a loser of a race, matches no row and changes
nothing. The rules:

* Either party may ask once per call to move it (``ask_reschedule``), until its room opens; the
  other party confirms (``reschedule``: the start, the room's opening, the join deadline and the
  reminders move, the invitation's SEQUENCE goes up and both get the update) or keeps the agreed
  time (``keep_schedule``). A question left unanswered lapses when the room opens.
* The buyer may cancel until the call starts: at least CANCEL_NOTICE_SECONDS before the start,
  for a full refund (``buyer_cancel``, reason ``buyer_cancelled``); later, the cancellation counts
  as a no-show (``buyer_cancel_late``, reason ``buyer_no_show``: charged, the seller paid).
  Either way the calendar event is cancelled (METHOD:CANCEL, SEQUENCE up) and the reminders
  withdrawn.
* The reminders (24 h and 10 min before) are sent by the sweep (``send_due_reminders``) from
  ``next_reminder_at``; each is an outbox row keyed per call, stage and start, so it is sent at
  most once, and never for a call that is no longer ACCEPTED.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, Select, select, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.formats import iso
from app.models import CallRequest, CancelReason, RequestStatus, SettlementOutcome
from app.queue import enqueue_after_commit
from app.refusals import Conflict, Forbidden, Invalid
from app.services.audit import record_event
from app.services.availability import load_availability, within_hours
from app.services.lifecycle import invitations, settlement
from app.services.lifecycle._moves import SWEEP_BATCH, move_request, require_request
from app.services.scheduling import (
    MIN_LEAD,
    RESCHEDULE_HORIZON,
    ScheduleConfig,
    first_reminder,
    join_opens,
    reminder_due,
)
from app.services.sweeping import Moment, looks_for
from tasks import call_endings as call_ending_tasks
from tasks import request_payments as payment_tasks

SYSTEM = "system"
OTHER = {"buyer": "seller", "seller": "buyer"}


def party_actor(party: str, call: CallRequest) -> str:
    """The audit log's actor: the seller's user id, or "buyer" (their address stays out of the log)."""
    return f"user:{call.seller_id}" if party == "seller" else "buyer"


def _before_room_opens(now: datetime) -> tuple[ColumnElement[bool], ...]:
    """A scheduled call whose room has not opened yet (so nobody can be in it)."""
    return (
        CallRequest.scheduled_start.is_not(None),
        CallRequest.started_at.is_(None),
        CallRequest.join_opens_at > now,
    )


def ask_reschedule(
    session: Session, call: CallRequest, party: str, start: datetime, *, config: ScheduleConfig, now: datetime
) -> CallRequest:
    """``party`` asks to move the call to ``start``; the other party is asked by email. Once per
    call, until the room opens. A buyer's time must fall in the seller's hours; the seller may
    offer any time (it is their own diary)."""
    _check_new_start(session, call, party, start, config=config, now=now)
    moved = move_request(
        session,
        "ask_reschedule",
        call.id,
        *_before_room_opens(now),
        CallRequest.reschedule_asked_at.is_(None),
        now=now,
        values={"reschedule_start": start, "reschedule_by": party, "reschedule_asked_at": now},
    )
    if not moved:
        raise _why_not(session, call.id, now, asking=True)
    record_event(
        session, "call.reschedule_asked", ref_id=call.id, actor=party_actor(party, call), payload={"start": iso(start)}
    )
    call = require_request(session, call.id)
    invitations.send_to(session, call, OTHER[party], "reschedule_asked", config=config, extra={"asked_by": party})
    return call


def answer_reschedule(
    session: Session, call: CallRequest, party: str, *, accept: bool, config: ScheduleConfig, now: datetime
) -> CallRequest:
    """The other party confirms the new time (``reschedule``) or keeps the agreed one
    (``keep_schedule``). Only the party who did not ask may answer, while the room is not open
    and the new time is still ahead."""
    if call.reschedule_by is None or call.reschedule_answered_at is not None:
        raise Conflict("no_question", "There is no new time waiting for an answer.")
    if call.reschedule_by == party:
        raise Forbidden("not_yours", "The other party answers this request.")
    conditions = (
        *_before_room_opens(now),
        CallRequest.reschedule_by == call.reschedule_by,
        CallRequest.reschedule_answered_at.is_(None),
        CallRequest.reschedule_start > now,
    )
    if accept:
        return _reschedule(session, call, party, conditions, config=config, now=now)
    if not move_request(
        session, "keep_schedule", call.id, *conditions, now=now, values={"reschedule_answered_at": now}
    ):
        raise _why_not(session, call.id, now, asking=False)
    record_event(session, "call.reschedule_declined", ref_id=call.id, actor=party_actor(party, call))
    call = require_request(session, call.id)
    invitations.send_to(session, call, OTHER[party], "reschedule_declined", config=config, extra={})
    return call


def _reschedule(
    session: Session,
    call: CallRequest,
    party: str,
    conditions: tuple[ColumnElement[bool], ...],
    *,
    config: ScheduleConfig,
    now: datetime,
) -> CallRequest:
    start = call.reschedule_start
    assert start is not None
    invitations.withdraw_reminders(session, call)
    values = {
        "scheduled_start": start,
        "join_opens_at": join_opens(start, now=now, config=config),
        "join_deadline": start + config.join_window,
        "next_reminder_at": first_reminder(start, now=now),
        "schedule_sequence": CallRequest.schedule_sequence + 1,
        "reschedule_answered_at": now,
    }
    if not move_request(session, "reschedule", call.id, *conditions, now=now, values=values):
        raise _why_not(session, call.id, now, asking=False)
    record_event(
        session, "call.rescheduled", ref_id=call.id, actor=party_actor(party, call), payload={"start": iso(start)}
    )
    call = require_request(session, call.id)
    invitations.send_invitations(session, call, cause="call_rescheduled", method="REQUEST", config=config, now=now)
    return call


def cancel_by_buyer(session: Session, call: CallRequest, *, config: ScheduleConfig, now: datetime) -> CallRequest:
    """The buyer calls off a scheduled call before it starts. With at least the notice left: a
    full refund (the payment is released by a task). Inside the notice: the no-show rule (the
    buyer is charged, the seller earns, as if the buyer had not come)."""
    if call.scheduled_start is None:
        raise Conflict("not_scheduled", "Only a call booked for a later time can be cancelled.")
    in_time = now <= call.scheduled_start - config.cancel_notice
    move = "buyer_cancel" if in_time else "buyer_cancel_late"
    timing = CallRequest.scheduled_start >= now + config.cancel_notice if in_time else CallRequest.join_deadline > now
    values = {
        "cancel_reason": CancelReason.BUYER_CANCELLED if in_time else CancelReason.BUYER_NO_SHOW,
        "cancelled_at": now,
        "next_reminder_at": None,
        # The calendar event's cancellation is a new version of it.
        "schedule_sequence": CallRequest.schedule_sequence + 1,
    }
    conditions = (CallRequest.scheduled_start.is_not(None), CallRequest.started_at.is_(None), timing)
    if not move_request(session, move, call.id, *conditions, now=now, values=values):
        raise _why_not(session, call.id, now, asking=False)
    payload = {"start": iso(call.scheduled_start), "in_time": in_time}
    record_event(session, f"call.{move}", ref_id=call.id, actor="buyer", payload=payload)
    invitations.withdraw_reminders(session, call)
    if in_time:
        enqueue_after_commit(session, payment_tasks.release_hold, str(call.id))
    else:
        enqueue_after_commit(session, call_ending_tasks.release_room, str(call.id))
    call = require_request(session, call.id)
    if not in_time:
        # Settled as a buyer no-show: the buyer pays, the seller earns the net (lifecycle.settlement).
        settlement.settle(session, call.id, SettlementOutcome.BUYER_NO_SHOW, minimum_seconds=0, now=now)
    cause = "call_cancelled" if in_time else "call_cancelled_late"
    invitations.send_invitations(session, call, cause=cause, method="CANCEL", config=config, now=now)
    return call


def _reminder_due(now: Moment) -> Select[tuple[uuid.UUID]]:
    return select(CallRequest.id).where(
        CallRequest.next_reminder_at <= now,
        CallRequest.status == RequestStatus.ACCEPTED,
        CallRequest.started_at.is_(None),
    )


@looks_for(lambda now: _reminder_due(now).exists())
def send_due_reminders(session: Session, now: datetime, settings: Settings) -> dict[str, int]:
    """Sweep step: the reminders now due (24 h and 10 min before a scheduled start), for calls
    still ACCEPTED and not started. ``next_reminder_at`` moves to the next one in the same
    transaction; the outbox key makes a repeat send nothing twice."""
    config = ScheduleConfig.from_settings(settings)
    sent = 0
    for call_id in session.scalars(_reminder_due(now).limit(SWEEP_BATCH).with_for_update(skip_locked=True)).all():
        call = require_request(session, call_id)
        assert call.scheduled_start is not None, "only scheduled calls have reminders"
        stage, following = reminder_due(call.scheduled_start, now)
        if stage is not None:
            invitations.send_reminders(session, call, stage, config=config)
            sent += 1
        session.execute(
            update(CallRequest)
            .where(CallRequest.id == call_id)
            .values(next_reminder_at=following)
            .execution_options(synchronize_session=False)
        )
    return {"reminders_sent": sent}


# --- Helpers ---------------------------------------------------------------------------------------


def _check_new_start(
    session: Session, call: CallRequest, party: str, start: datetime, *, config: ScheduleConfig, now: datetime
) -> None:
    if call.scheduled_start is None:
        raise Conflict("not_scheduled", "Only a call booked for a later time can be moved.")
    if start < now + MIN_LEAD:
        raise Invalid("too_soon", "Pick a time at least 30 minutes from now.", field="startAt")
    if start > now + RESCHEDULE_HORIZON:
        raise Invalid("too_far", f"Pick a time within the next {RESCHEDULE_HORIZON.days} days.", field="startAt")
    if start == call.scheduled_start:
        raise Invalid("same_time", "That is the time already agreed.", field="startAt")
    if party == "buyer" and not within_hours(load_availability(session, call.seller_id), start, config.call_duration):
        raise Invalid("outside_hours", "That time is outside the seller's hours.", field="startAt")


def _why_not(session: Session, call_id: uuid.UUID, now: datetime, *, asking: bool) -> Conflict:
    """Why a schedule move matched no row, read after it (so after any winner committed)."""
    call = require_request(session, call_id)
    if call.status != RequestStatus.ACCEPTED:
        return Conflict("call_over", "This call is no longer on.")
    if call.started_at is not None or (call.join_opens_at is not None and call.join_opens_at <= now):
        return Conflict("room_open", "The room is already open: the time can no longer change.")
    if asking and call.reschedule_asked_at is not None:
        return Conflict("already_asked", "This call has already been asked to move once.")
    if call.reschedule_start is not None and call.reschedule_start <= now:
        return Conflict("time_passed", "The new time has already passed.")
    if call.join_deadline is not None and call.join_deadline <= now:
        return Conflict("call_over", "This call is no longer on.")
    return Conflict("changed", "The call changed meanwhile. Reload the page.")
