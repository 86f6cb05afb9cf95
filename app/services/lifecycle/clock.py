"""An accepted call: its clock starts, it ends (completed), or it never happens (no-shows, a
technical failure, a refused capture).

Each function is one move of the table (``table.py``) with its audit row, tasks and emails. The
clock starts when both parties' media is connected at the same time (``start_when_connected``,
from the intervals of ``app.services.media_presence``), never because a page says "joined". The
end is enforced three times over (the ETA task, the sweep, the provider), and each path is the
same ``complete`` move, so whichever comes first wins and the others change nothing. The winner
settles the call (``settlement``: the split, the seller's earning, the buyer's refund) and has
the room deleted.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from app import metrics
from app.config import Settings
from app.db import on_commit
from app.formats import format_money, iso
from app.models import CallRequest, CallSettlement, CancelReason, RequestStatus, SettlementOutcome
from app.queue import enqueue_after_commit, enqueue_now
from app.services import media_presence, settlement_text
from app.services.audit import record_event
from app.services.calls import CallConfig, problem_url, rate_url
from app.services.lifecycle import settlement
from app.services.lifecycle._moves import any_request, due_batch, move_request, move_requests, require_request
from app.services.lifecycle.notices import email_context, notify
from app.services.sweeping import Moment, looks_for
from tasks import call_endings as call_ending_tasks
from tasks import request_payments as payment_tasks

log = logging.getLogger(__name__)

SYSTEM = "system"
# The clock ends these by itself, only once ends_at has passed; a party or an admin any time.
TIMER_ENDS = ("timer", "sweep")


def start_clock(
    session: Session, call_id: uuid.UUID, *, at: datetime, now: datetime, duration_seconds: int
) -> datetime | None:
    """The one move that starts the call: ``started_at = at`` (the moment both parties' media was
    first connected, which the caller measured), ``ends_at = at + duration``, if that moment is
    within the join window. The end is scheduled after commit (``end_call`` with ``eta=ends_at``).
    Returns ``ends_at``, or None if it had started (or the window had passed)."""
    ends_at = at + timedelta(seconds=duration_seconds)
    started = move_request(
        session,
        "start_clock",
        call_id,
        CallRequest.started_at.is_(None),
        CallRequest.join_deadline > at,
        now=now,
        values={"started_at": at, "ends_at": ends_at},
    )
    if not started:
        return None
    payload = {"ends_at": iso(ends_at), "started_at": iso(at)}
    record_event(session, "call.started", ref_id=call_id, actor=SYSTEM, payload=payload)
    on_commit(session, metrics.call_started)
    enqueue_after_commit(session, call_ending_tasks.end_call, str(call_id), eta=ends_at)
    return ends_at


def start_when_connected(
    session: Session, call_id: uuid.UUID, *, now: datetime, duration_seconds: int
) -> datetime | None:
    """Start the clock if both parties' media has been connected at the same time, as the call's
    own source says (the built-in room's pages, or Daily): "joined" alone never starts it."""
    call = require_request(session, call_id)
    if call.started_at is not None or call.status != RequestStatus.ACCEPTED:
        return None
    both = media_presence.spans(session, call.id, media_presence.source_for(call), now)
    together = media_presence.first_overlap(both)
    if together is None:
        return None
    return start_clock(session, call.id, at=min(together, now), now=now, duration_seconds=duration_seconds)


def complete_call(
    session: Session,
    request_id: uuid.UUID,
    *,
    ended_by: str,
    config: CallConfig,
    now: datetime,
    release_room_later: bool = True,
) -> bool:
    """ACCEPTED (started) → COMPLETED, settled by who ended it and when (``settlement``).
    ``ended_by`` is ``timer`` or ``sweep`` (only once ``ends_at`` has passed), ``seller``,
    ``buyer`` or ``admin`` (any time after the start). The room is deleted by a task after commit
    unless the caller (the timer task) deletes it itself. False when the call was not one that
    could end now (already ended, not started, or not yet due)."""
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


def _overdue(now: Moment) -> tuple[ColumnElement[bool], ...]:
    return (CallRequest.status == RequestStatus.ACCEPTED, CallRequest.ends_at <= now)


@looks_for(lambda now: any_request(*_overdue(now)))
def end_overdue_calls(session: Session, now: datetime, settings: Settings) -> dict[str, int]:
    """Sweep step: complete every call whose ``ends_at`` has passed (the ETA task was lost or late)."""
    config = CallConfig.from_settings(settings)
    ended = move_requests(
        session, "complete", due_batch(*_overdue(now)), now=now, values={"ended_at": now, "ended_by": "sweep"}
    )
    # The rooms are deleted at once, not after this step's commit: their calls are over by the
    # clock whatever happens to this transaction, and fifty completions below take a while.
    for call_id in ended:
        enqueue_now(call_ending_tasks.release_room, str(call_id))
    for call_id in ended:
        _completed(session, call_id, ended_by="sweep", config=config, now=now)
    return {"calls_ended_by_sweep": len(ended)}


def _never_started(now: Moment) -> tuple[ColumnElement[bool], ...]:
    return (
        CallRequest.status == RequestStatus.ACCEPTED,
        CallRequest.started_at.is_(None),
        CallRequest.join_deadline <= now,
    )


@looks_for(lambda now: any_request(*_never_started(now)))
def apply_no_shows(session: Session, now: datetime, settings: Settings) -> dict[str, int]:
    """Sweep step: calls still not started at their join deadline are cancelled. Only the buyer
    absent → buyer_no_show, the seller is paid; the seller absent (or both) → seller_no_show, the
    buyer gets their money back; both joined but their media never connected together →
    technical_failure, the buyer gets their money back and nobody pays a fee."""
    due = _never_started(now)
    seller_in, buyer_in = CallRequest.seller_joined_at.is_not(None), CallRequest.buyer_joined_at.is_not(None)
    config = CallConfig.from_settings(settings)
    counts = {}
    for move, reason, conditions in (
        ("no_show", CancelReason.BUYER_NO_SHOW, (*due, seller_in, CallRequest.buyer_joined_at.is_(None))),
        ("technical_failure", CancelReason.TECHNICAL_FAILURE, (*due, seller_in, buyer_in)),
        ("no_show", CancelReason.SELLER_NO_SHOW, due),
    ):
        cancelled = move_requests(
            session, move, due_batch(*conditions), now=now, values={"cancel_reason": reason, "cancelled_at": now}
        )
        for call_id in cancelled:
            _did_not_happen(session, call_id, reason, config=config, now=now)
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
    outcome = settlement.outcome_of_end(call, ended_by)
    settled = settlement.settle(session, call.id, outcome, minimum_seconds=config.early_end_minimum_seconds, now=now)
    record_event(session, "call.ended", ref_id=call.id, actor=SYSTEM, payload={"ended_by": ended_by})
    on_commit(session, partial(metrics.call_ended, ended_by, ends_at=call.ends_at, ended_at=call.ended_at))
    context = email_context(session, call) | {
        "rate_url": rate_url(config.app_url, config.secret_key, call),
        "ended_by": ended_by,
    }
    notify(session, call, "call_completed", context=context, party_context=settled_context(call, settled, config))


def _did_not_happen(
    session: Session, call_id: uuid.UUID, reason: CancelReason, *, config: CallConfig, now: datetime
) -> None:
    call = require_request(session, call_id)
    record_event(session, f"call.{reason.value}", ref_id=call.id, actor=SYSTEM)
    enqueue_after_commit(session, call_ending_tasks.release_room, str(call.id))
    settled = settlement.settle(session, call.id, SettlementOutcome(reason.value), minimum_seconds=0, now=now)
    notify(session, call, reason.value, party_context=settled_context(call, settled, config))


def settled_context(call: CallRequest, settled: CallSettlement, config: CallConfig) -> dict[str, dict[str, Any]]:
    """Each party's part of a settled call's emails: what it means for their money (the same
    sentence the end screen shows) and their "report a problem" link."""
    split = {
        "refund_cents": settled.refund_cents,
        "fee_cents": settled.fee_cents,
        "seller_net_cents": settled.net_cents,
        "refund_amount": format_money(settled.refund_cents, settled.currency),
        "fee_amount": format_money(settled.fee_cents, settled.currency),
        "seller_net_amount": format_money(settled.net_cents, settled.currency),
        "kept_amount": format_money(settled.gross_cents - settled.refund_cents, settled.currency),
        "outcome": settled.outcome.value,
    }
    return {
        party: split
        | {
            "outcome_text": settlement_text.describe(call, settled, party),
            "problem_url": problem_url(config.app_url, config.secret_key, call, party),
        }
        for party in ("buyer", "seller")
    }
