"""How a call ends, seen from the call: the party's "end" button, the timer's outcome, the room
after the end, and the recovery of call work a lost message left undone.

The end itself (ACCEPTED → COMPLETED, the earning, the emails) and the no-shows are moves of
``app.services.lifecycle.clock``. The end is enforced three times over, and every path is that
same move, so whichever comes first wins and the others change nothing:

1. ``tasks.call_endings.end_call``, published with an ETA at ``ends_at`` after the start commits;
2. the beat sweep (``lifecycle.clock.end_overdue_calls``, every SWEEP_INTERVAL_SECONDS), for an
   ETA task lost with a dead worker;
3. the provider: Daily's room expires at ``ends_at`` and ejects both; the built-in room's page
   hangs up and the API stops signaling.

The room is deleted by ``release_room``, a separate unit of work: a Daily outage delays the
deletion, never the end.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, cast, exists, func, or_, select, true, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.integrations.payments import PaymentError, PaymentGateway
from app.integrations.video import VideoError, VideoProvider
from app.models import CallRequest, CallSettlement, EventLog, PaymentState, RequestStatus, Transaction
from app.queue import RetryLater, enqueue_after_commit
from app.refusals import Conflict
from app.services.audit import record_event
from app.services.calls import SYSTEM, CallAccess, CallConfig, call_state
from app.services.lifecycle import clock, settlement
from app.services.lifecycle._moves import (
    any_request,
    claim,
    follow_up_due,
    lease_rows,
    load_request,
    paid_with,
    require_request,
)
from app.services.sweeping import Moment, looks_for
from tasks import call_endings as call_ending_tasks
from tasks import calls as call_tasks

log = logging.getLogger(__name__)

REFUND_FAILED_EVENT = "payment.refund_failed"
# The sweep re-publishes room work left undone this long (a lost message, retries exhausted),
# and gives up on deleting a room after RELEASE_GIVE_UP: by then Daily has expired it anyway.
RECOVER_AFTER = timedelta(seconds=30)
RELEASE_GIVE_UP = timedelta(hours=1)
# How far back the every-few-seconds sweep looks for seller no-shows not yet refunded; see
# FOLLOW_UP_WINDOW in app/services/request_payments.py for why, and for the hourly full sweep.
REFUND_WINDOW = timedelta(days=2)
_FINISHED_AT = func.coalesce(CallRequest.ended_at, CallRequest.cancelled_at)


# The end of a call.


def end_call(
    session: Session,
    request_id: uuid.UUID,
    *,
    ended_by: str,
    config: CallConfig,
    now: datetime,
    release_room_later: bool = True,
) -> str:
    """End the call (``lifecycle.clock.complete_call``) and say how it went: ``ended``, ``not_due``
    (``ends_at`` is still ahead: an ETA task woke early) or ``unchanged`` (already ended, or not a
    call that can end)."""
    if clock.complete_call(
        session, request_id, ended_by=ended_by, config=config, now=now, release_room_later=release_room_later
    ):
        return "ended"
    call = load_request(session, request_id)
    if call is not None and call.status == RequestStatus.ACCEPTED and call.ends_at is not None and call.ends_at > now:
        return "not_due"
    return "unchanged"


def end_by_party(session: Session, access: CallAccess, *, config: CallConfig, now: datetime) -> dict[str, Any]:
    """``POST /api/video/end``: either party may end the call early (the seller then refunds the
    unused share, the buyer still pays in full: ``lifecycle.settlement``); a page whose timer ran
    out ends it as the timer would. Ending an ended call is a no-op."""
    call = access.call
    if not access.ended:
        if call.started_at is None or call.ends_at is None:
            raise Conflict("not_started", "The call has not started yet.")
        ended_by = "timer" if call.ends_at <= now else access.party
        end_call(session, call.id, ended_by=ended_by, config=config, now=now)
    return call_state(require_request(session, call.id), now, party=access.party)


def recover_call_work_all_history(session: Session, now: datetime, settings: Settings) -> dict[str, int]:
    """Hourly step: ``recover_call_work`` over all of history, so a refund still undone after the
    sweep's look-back is published again, never forgotten."""
    return recover_call_work(session, now, settings, look_back=None)


# The room after the end.


def release_room(session: Session, request_id: uuid.UUID, *, provider: VideoProvider, now: datetime) -> str:
    """Delete the provider room of a call that is over: ended, cancelled, or past its ``ends_at``
    (the clock decides, even before the end is recorded). Returns ``deleted``, ``skipped`` (no
    room, already deleted, or the call is still on) or ``failed`` (refused for good)."""
    call = load_request(session, request_id)
    if call is None or not call.room_name or call.room_deleted_at is not None:
        return "skipped"
    if call.status == RequestStatus.ACCEPTED and (call.ends_at is None or call.ends_at > now):
        return "skipped"
    if call.video_provider == provider.name:
        try:
            provider.end(call.room_name)
        except VideoError as error:
            if error.transient:
                raise RetryLater(str(error)) from error
            log.error("the provider refused to delete a room", extra={"request_id": str(call.id)})
            payload = {"status": error.status}
            record_event(session, "call.room_delete_failed", ref_id=call.id, actor=SYSTEM, payload=payload)
            return "failed"
    elif call.video_provider != "builtin":
        # The configuration changed since the room was made; Daily expires it at its exp.
        log.warning("room of another provider left to expire", extra={"request_id": str(call.id)})
    # Recorded only if nobody holds the row: the sweep that is ending this call may, for a few
    # seconds, and waiting for it would tie up a worker. Unrecorded, the deletion is repeated
    # (a 404, so a success) by the recovery sweep later.
    free = session.execute(
        select(CallRequest.id)
        .where(CallRequest.id == call.id, CallRequest.room_deleted_at.is_(None))
        .with_for_update(skip_locked=True)
    ).scalar_one_or_none()
    if free is not None:
        session.execute(
            update(CallRequest)
            .where(CallRequest.id == call.id)
            .values(room_deleted_at=now)
            .execution_options(synchronize_session=False)
        )
    return "deleted"


# The buyer's refund.


def refund_buyer(session: Session, request_id: uuid.UUID, *, gateway: PaymentGateway, now: datetime) -> str:
    """Give the buyer what the call's settlement owes them: all of it after a seller no-show or a
    technical failure (a captured payment refunded, a hold never captured released), the unused
    share after the seller ended early (a partial refund). One idempotency key per call
    (``refund:<id>``, ``cancel:<id>``), so a retried task or a second worker gets the first answer
    back and the payment moves once. Returns ``refunded``, ``voided``, ``unchanged``, ``skipped``
    or ``failed``."""
    call = load_request(session, request_id)
    settled = settlement.settlement_of(session, request_id) if call is not None else None
    if call is None or settled is None or settled.refund_cents <= 0:
        return "skipped"
    if settled.refund_done_at is not None:
        return "unchanged"  # given already: a repeated task
    transaction = call.transaction
    state = transaction.payment_state
    full = settled.refund_cents >= settled.gross_cents
    if not transaction.stripe_payment_intent_id or state not in (PaymentState.CAPTURED, PaymentState.HELD):
        return "unchanged"
    if state == PaymentState.HELD and not full:
        log.error("partial refund of a payment never captured", extra={"request_id": str(call.id)})
        return "unchanged"
    intent = transaction.stripe_payment_intent_id
    try:
        if state == PaymentState.HELD:
            gateway.cancel(intent, idempotency_key=f"cancel:{call.id}")
        else:
            amount = None if full else settled.refund_cents
            gateway.refund(intent, idempotency_key=f"refund:{call.id}", amount_cents=amount)
    except PaymentError as error:
        if error.transient:
            raise RetryLater(str(error)) from error
        if error.code != "charge_already_refunded":
            log.error("buyer refund refused", extra={"request_id": str(call.id), "code": error.code})
            record_event(session, REFUND_FAILED_EVENT, ref_id=call.id, actor=SYSTEM, payload={"code": error.code})
            return "failed"
    settlement.buyer_refund_done(session, call, voided=state == PaymentState.HELD, now=now)
    return "voided" if state == PaymentState.HELD else "refunded"


# Sweep steps.


def _unprovisioned(now: Moment) -> tuple[ColumnElement[bool], ...]:
    """A paid, accepted call still without a room."""
    return (
        # From the room's opening: a call accepted for later gets its room shortly before the start.
        follow_up_due(func.coalesce(CallRequest.join_opens_at, CallRequest.accepted_at), now, RECOVER_AFTER),
        CallRequest.status == RequestStatus.ACCEPTED,
        CallRequest.room_ready_at.is_(None),
        CallRequest.join_deadline > now,
        paid_with(Transaction.payment_state == PaymentState.CAPTURED),
    )


def _room_left_open(now: Moment) -> tuple[ColumnElement[bool], ...]:
    """An ended call whose room still exists."""
    return (
        follow_up_due(_FINISHED_AT, now, RECOVER_AFTER),
        CallRequest.status.in_((RequestStatus.COMPLETED, RequestStatus.CANCELLED)),
        CallRequest.room_name.is_not(None),
        CallRequest.room_deleted_at.is_(None),
        now - RELEASE_GIVE_UP < _FINISHED_AT,
    )


def _refund_owed(now: Moment, look_back: timedelta | None) -> tuple[ColumnElement[bool], ...]:
    """A settlement's refund not yet given (finished ``look_back`` ago at most; None: ever)."""
    return (
        follow_up_due(_FINISHED_AT, now, RECOVER_AFTER),
        exists().where(
            CallSettlement.call_request_id == CallRequest.id,
            CallSettlement.refund_cents > 0,
            CallSettlement.refund_done_at.is_(None),
        ),
        now - look_back < _FINISHED_AT if look_back is not None else true(),
        paid_with(Transaction.payment_state.in_((PaymentState.CAPTURED, PaymentState.HELD))),
        # A refusal is for an operator to look at, not for the sweep to repeat.
        ~exists().where(EventLog.type == REFUND_FAILED_EVENT, EventLog.ref_id == cast(CallRequest.id, String)),
    )


@looks_for(
    lambda now: or_(
        any_request(*_unprovisioned(now)),
        any_request(*_room_left_open(now)),
        any_request(*_refund_owed(now, REFUND_WINDOW)),
    )
)
def recover_call_work(
    session: Session, now: datetime, settings: Settings, *, look_back: timedelta | None = REFUND_WINDOW
) -> dict[str, int]:
    """Sweep step: re-publish the call's work whose message was lost (broker down at commit, a
    dead worker, retries exhausted). A paid, accepted call without a room gets one; an ended
    call whose room still exists has it deleted; a settlement's refund not yet given is given.
    Every task is repeat-safe; each row is re-published RECOVER_AFTER after its transition,
    then at most once per RECOVER_AFTER (its sweep lease). Refunds are looked for ``look_back``
    into the past (None: all of history)."""
    provisions = claim(session, *_unprovisioned(now))
    releases = claim(session, *_room_left_open(now))
    refunds = claim(session, *_refund_owed(now, look_back))
    lease_rows(session, {*provisions, *releases, *refunds}, now + RECOVER_AFTER)
    for task, ids in (
        (call_tasks.provision_room, provisions),
        (call_ending_tasks.release_room, releases),
        (call_ending_tasks.refund_buyer, refunds),
    ):
        for call_id in ids:
            enqueue_after_commit(session, task, str(call_id))
    return {
        "rooms_requeued": len(provisions),
        "room_releases_requeued": len(releases),
        "refunds_requeued": len(refunds),
    }
