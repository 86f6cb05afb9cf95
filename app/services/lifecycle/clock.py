"""An accepted call: its clock starts, it ends (completed), or it never happens (no-shows, a
refused capture).

Each function is one move of the table (``table.py``) with its audit row, tasks and emails. The
end is enforced three times over (the ETA task, the sweep, the provider), and each path is the
same ``complete`` move, so whichever comes first wins and the others change nothing. The winner
writes the seller's earning (a ledger row, UNIQUE per call and kind) and has the room deleted.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from app import metrics
from app.config import Settings
from app.db import on_commit
from app.formats import iso
from app.models import CallRequest, CancelReason, PaymentState, RequestStatus
from app.queue import enqueue_after_commit, enqueue_now
from app.services import ledger
from app.services.audit import record_event
from app.services.calls import CallConfig, rate_url
from app.services.lifecycle._moves import due_batch, move_request, move_requests, require_request
from app.services.lifecycle.notices import email_context, notify
from tasks import call_endings as call_ending_tasks
from tasks import request_payments as payment_tasks

log = logging.getLogger(__name__)

SYSTEM = "system"
# The clock ends these by itself, only once ends_at has passed; a party or an admin any time.
TIMER_ENDS = ("timer", "sweep")


def start_clock(session: Session, call_id: uuid.UUID, *, now: datetime, duration_seconds: int) -> datetime | None:
    """The one move that starts the call, the first time both parties are present within the
    join window: ``started_at = now``, ``ends_at = now + duration``. The end is scheduled after
    commit (``end_call`` with ``eta=ends_at``). Returns ``ends_at``, or None if it had started."""
    ends_at = now + timedelta(seconds=duration_seconds)
    started = move_request(
        session,
        "start_clock",
        call_id,
        CallRequest.started_at.is_(None),
        CallRequest.buyer_present.is_(True),
        CallRequest.seller_present.is_(True),
        CallRequest.join_deadline > now,
        now=now,
        values={"started_at": now, "ends_at": ends_at},
    )
    if not started:
        return None
    record_event(session, "call.started", ref_id=call_id, actor=SYSTEM, payload={"ends_at": iso(ends_at)})
    on_commit(session, metrics.call_started)
    enqueue_after_commit(session, call_ending_tasks.end_call, str(call_id), eta=ends_at)
    return ends_at


def complete_call(
    session: Session,
    request_id: uuid.UUID,
    *,
    ended_by: str,
    config: CallConfig,
    now: datetime,
    release_room_later: bool = True,
) -> bool:
    """ACCEPTED (started) → COMPLETED. ``ended_by`` is ``timer`` or ``sweep`` (only once ``ends_at``
    has passed), ``seller`` or ``admin`` (any time after the start). The room is deleted by a task
    after commit unless the caller (the timer task) deletes it itself. False when the call was not
    one that could end now (already ended, not started, or not yet due)."""
    conditions: list[ColumnElement[bool]] = [CallRequest.started_at.is_not(None)]
    if ended_by in TIMER_ENDS:
        conditions.append(CallRequest.ends_at <= now)
    ended = move_request(
        session, "complete", request_id, *conditions, now=now, values={"ended_at": now, "ended_by": ended_by}
    )
    if ended:
        if release_room_later:
            enqueue_after_commit(session, call_ending_tasks.release_room, str(request_id))
        _completed(session, request_id, ended_by=ended_by, config=config, now=now)
    return ended


def end_overdue_calls(session: Session, now: datetime, settings: Settings) -> dict[str, int]:
    """Sweep step: complete every call whose ``ends_at`` has passed (the ETA task was lost or late)."""
    config = CallConfig.from_settings(settings)
    overdue = (CallRequest.status == RequestStatus.ACCEPTED, CallRequest.ends_at <= now)
    ended = move_requests(
        session, "complete", due_batch(*overdue), now=now, values={"ended_at": now, "ended_by": "sweep"}
    )
    # The rooms are deleted at once, not after this step's commit: their calls are over by the
    # clock whatever happens to this transaction, and fifty completions below take a while.
    for call_id in ended:
        enqueue_now(call_ending_tasks.release_room, str(call_id))
    for call_id in ended:
        _completed(session, call_id, ended_by="sweep", config=config, now=now)
    return {"calls_ended_by_sweep": len(ended)}


def apply_no_shows(session: Session, now: datetime, settings: Settings) -> dict[str, int]:
    """Sweep step: calls still not started at their join deadline are cancelled. Only the buyer
    absent → buyer_no_show, the seller is paid; otherwise (the seller absent, or both joined but
    never at the same time) → seller_no_show, the buyer gets their money back."""
    due = (
        CallRequest.status == RequestStatus.ACCEPTED,
        CallRequest.started_at.is_(None),
        CallRequest.join_deadline <= now,
    )
    only_buyer_absent = (CallRequest.seller_joined_at.is_not(None), CallRequest.buyer_joined_at.is_(None))
    counts = {}
    for reason, conditions in (
        (CancelReason.BUYER_NO_SHOW, (*due, *only_buyer_absent)),
        (CancelReason.SELLER_NO_SHOW, due),
    ):
        cancelled = move_requests(
            session, "no_show", due_batch(*conditions), now=now, values={"cancel_reason": reason, "cancelled_at": now}
        )
        for call_id in cancelled:
            _no_show(session, call_id, reason, now=now)
        counts[f"{reason.value}s"] = len(cancelled)
    return counts


def mark_payment_failed(session: Session, request_id: uuid.UUID, *, now: datetime, code: str | None = None) -> bool:
    """ACCEPTED → CANCELLED (payment_failed) after a capture the gateway refused for good.

    Both parties are told and whatever is left of the hold is released. False (and nothing
    changes) when the request is no longer ACCEPTED: a repeated task is a no-op.
    """
    values = {"cancel_reason": CancelReason.PAYMENT_FAILED, "cancelled_at": now}
    if not move_request(session, "fail_payment", request_id, now=now, values=values):
        return False
    record_event(session, "request.payment_failed", ref_id=request_id, actor=SYSTEM, payload={"code": code})
    enqueue_after_commit(session, payment_tasks.release_hold, str(request_id))
    notify(session, require_request(session, request_id), "payment_failed")
    return True


def _completed(session: Session, call_id: uuid.UUID, *, ended_by: str, config: CallConfig, now: datetime) -> None:
    call = require_request(session, call_id)
    _earn(session, call, now=now)
    record_event(session, "call.ended", ref_id=call.id, actor=SYSTEM, payload={"ended_by": ended_by})
    on_commit(session, partial(metrics.call_ended, ended_by, ends_at=call.ends_at, ended_at=call.ended_at))
    context = email_context(session, call) | {
        "rate_url": rate_url(config.app_url, config.secret_key, call),
        "ended_by": ended_by,
    }
    notify(session, call, "call_completed", context=context)


def _no_show(session: Session, call_id: uuid.UUID, reason: CancelReason, *, now: datetime) -> None:
    call = require_request(session, call_id)
    record_event(session, f"call.{reason.value}", ref_id=call.id, actor=SYSTEM)
    enqueue_after_commit(session, call_ending_tasks.release_room, str(call.id))
    if reason == CancelReason.BUYER_NO_SHOW:
        _earn(session, call, now=now)
    else:
        enqueue_after_commit(session, call_ending_tasks.refund_no_show, str(call.id))
    notify(session, call, reason.value)


def _earn(session: Session, call: CallRequest, *, now: datetime) -> None:
    """The seller's earning for this call, once, if the money was collected."""
    state = call.transaction.payment_state
    if state != PaymentState.CAPTURED:
        # Nothing was collected (a refused or reversed payment): there is nothing to owe.
        log.warning("no earning for this call", extra={"request_id": str(call.id), "state": state})
        return
    ledger.record_earning(session, call, now=now)
