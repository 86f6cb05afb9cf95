"""How a call ends: on time, early by the seller, or not at all (the no-shows).

The end is enforced three times over, and every path is the same conditional UPDATE, so whichever
comes first wins and the others change nothing:

1. ``tasks.calls.end_call``, published with an ETA at ``ends_at`` after the start commits;
2. the beat sweep (``end_overdue_calls``, every SWEEP_INTERVAL_SECONDS), for an ETA task lost
   with a dead worker;
3. the provider: Daily's room expires at ``ends_at`` and ejects both; the built-in room's page
   hangs up and the API stops signaling.

The winner writes the seller's earning (a ledger row, UNIQUE per call and kind, so a repeat
adds nothing), queues the emails (deduplicated) and has the room deleted (``release_room``,
a separate unit of work: a Daily outage delays the deletion, never the end).

No-shows are decided at the join deadline by the sweep: the seller absent → CANCELLED
(seller_no_show) and the buyer refunded; only the buyer absent → CANCELLED (buyer_no_show) and
the seller paid. Both joined but never at the same time counts as the seller's no-show: a paid
call that did not happen is given back to the buyer.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import String, cast, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app import metrics
from app.config import Settings
from app.db import on_commit
from app.integrations.payments import PaymentError, PaymentGateway
from app.integrations.video import VideoError, VideoProvider
from app.models import (
    CallRequest,
    CancelReason,
    EventLog,
    LedgerEntry,
    LedgerKind,
    PaymentState,
    RequestStatus,
    Transaction,
    User,
)
from app.queue import enqueue_after_commit, enqueue_now
from app.services.audit import record_event
from app.services.calls import (
    SYSTEM,
    CallAccess,
    CallConfig,
    CallConflict,
    RetryLater,
    call_state,
    join_token,
    load_call,
)
from app.services.outbox import queue_email
from app.services.requests import email_context

log = logging.getLogger(__name__)

RELEASE_TASK = "tasks.calls.release_room"
REFUND_TASK = "tasks.calls.refund_no_show"
PROVISION_TASK = "tasks.calls.provision_room"
REFUND_FAILED_EVENT = "payment.refund_failed"
SWEEP_BATCH = 100
# The sweep re-publishes room work left undone this long (a lost message, retries exhausted),
# and gives up on deleting a room after RELEASE_GIVE_UP: by then Daily has expired it anyway.
RECOVER_AFTER = timedelta(seconds=30)
RELEASE_GIVE_UP = timedelta(hours=1)
# How far back the refunds follow-up looks: a no-show still owing its refund is re-claimed (and
# its updated_at bumped) every RECOVER_AFTER, so it stays inside; see FOLLOW_UP_WINDOW in
# app/services/request_payments.py for why the sweep's look-back is bounded.
REFUND_WINDOW = timedelta(days=7)
TIMER_ENDS = ("timer", "sweep")


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
    """ACCEPTED (started) → COMPLETED. ``ended_by`` is ``timer`` or ``sweep`` (only once
    ``ends_at`` has passed), ``seller`` or ``admin`` (any time after the start). The room is
    deleted by ``tasks.calls.release_room`` after commit, unless the caller (the timer task)
    deletes it itself (``release_room_later=False``).

    Returns ``ended``, ``not_due`` (``ends_at`` is still ahead: an ETA task woke early) or
    ``unchanged`` (already ended, or not a call that can end).
    """
    conditions = [
        CallRequest.id == request_id,
        CallRequest.status == RequestStatus.ACCEPTED,
        CallRequest.started_at.is_not(None),
    ]
    if ended_by in TIMER_ENDS:
        conditions.append(CallRequest.ends_at <= now)
    won = session.execute(
        update(CallRequest)
        .where(*conditions)
        .values(status=RequestStatus.COMPLETED, ended_at=now, ended_by=ended_by, updated_at=now)
        .returning(CallRequest.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if won is None:
        call = load_call(session, request_id)
        live = call is not None and call.status == RequestStatus.ACCEPTED and call.ends_at is not None
        return "not_due" if live and call.ends_at > now else "unchanged"  # type: ignore[union-attr, operator]
    if release_room_later:
        enqueue_after_commit(session, RELEASE_TASK, str(won))
    _completed(session, won, ended_by=ended_by, config=config)
    return "ended"


def end_by_party(session: Session, access: CallAccess, *, config: CallConfig, now: datetime) -> dict[str, Any]:
    """``POST /api/video/end``: the seller may end the call early; either page may end it once
    its time is up (the page's own timer). Ending an ended call is a no-op."""
    call = access.call
    if not access.ended:
        if call.started_at is None or call.ends_at is None:
            raise CallConflict("not_started", "The call has not started yet.")
        if access.party == "seller":
            ended_by = "seller"
        elif call.ends_at <= now:
            ended_by = "timer"
        else:
            raise CallConflict("seller_only", "Only the seller can end the call early.", status=403)
        end_call(session, call.id, ended_by=ended_by, config=config, now=now)
    current = load_call(session, call.id)
    assert current is not None
    return call_state(current, now)


def _completed(session: Session, call_id: uuid.UUID, *, ended_by: str, config: CallConfig) -> None:
    call = load_call(session, call_id)
    assert call is not None
    _earn(session, call, memo="Call completed")
    record_event(session, "call.ended", ref_id=call.id, actor=SYSTEM, payload={"ended_by": ended_by})
    on_commit(session, partial(metrics.call_ended, ended_by, ends_at=call.ends_at, ended_at=call.ended_at))
    context = email_context(session, call) | {
        "rate_url": rate_url(config.app_url, config.secret_key, call),
        "ended_by": ended_by,
    }
    _notify(session, call, "call_completed", context)


def rate_url(app_url: str, secret_key: str, call: CallRequest) -> str:
    """The buyer's "how was your call?" link; the rating page (issue 6) checks the buyer's token."""
    return f"{app_url.rstrip('/')}/rate/{call.id}?t={join_token(secret_key, call, 'buyer')}"


def _earn(session: Session, call: CallRequest, *, memo: str) -> None:
    """The seller's earning for this call: the net amount, once (UNIQUE(kind, call_request_id))."""
    transaction = call.transaction
    if transaction.payment_state != PaymentState.CAPTURED or transaction.net_cents <= 0:
        # Nothing was collected (or the platform keeps it all): there is nothing to owe.
        log.warning("no earning for this call", extra={"request_id": str(call.id), "state": transaction.payment_state})
        return
    session.execute(
        insert(LedgerEntry)
        .values(
            id=uuid.uuid4(),
            seller_id=call.seller_id,
            kind=LedgerKind.EARNING,
            amount_cents=transaction.net_cents,
            currency=transaction.currency,
            call_request_id=call.id,
            memo=memo,
        )
        .on_conflict_do_nothing(constraint="uq_ledger_entries_kind_call_request_id")
    )


def _notify(session: Session, call: CallRequest, cause: str, context: dict[str, Any]) -> None:
    seller_email = session.scalar(select(User.email).where(User.id == call.seller_id))
    for party, recipient in (("buyer", call.buyer_email), ("seller", seller_email)):
        if recipient:
            queue_email(
                session,
                recipient=recipient,
                template=f"{cause}_{party}",
                context=context,
                dedupe_key=f"{cause}:{party}:{call.id}",
            )


# The room after the end.


def release_room(session: Session, request_id: uuid.UUID, *, provider: VideoProvider, now: datetime) -> str:
    """Delete the provider room of a call that is over: ended, cancelled, or past its ``ends_at``
    (the clock decides, even before the end is recorded). Returns ``deleted``, ``skipped`` (no
    room, already deleted, or the call is still on) or ``failed`` (refused for good)."""
    call = load_call(session, request_id)
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


# No-shows.


def apply_no_shows(session: Session, now: datetime, settings: Settings) -> dict[str, int]:
    """Sweep step: calls still not started at their join deadline are cancelled."""
    config = CallConfig.from_settings(settings)
    due = (
        CallRequest.status == RequestStatus.ACCEPTED,
        CallRequest.started_at.is_(None),
        CallRequest.join_deadline <= now,
    )
    only_buyer_absent = (CallRequest.seller_joined_at.is_not(None), CallRequest.buyer_joined_at.is_(None))
    buyer_absent = _cancel_batch(session, now, CancelReason.BUYER_NO_SHOW, *due, *only_buyer_absent)
    seller_absent = _cancel_batch(session, now, CancelReason.SELLER_NO_SHOW, *due)
    for call_id in buyer_absent:
        _no_show(session, call_id, CancelReason.BUYER_NO_SHOW, config)
    for call_id in seller_absent:
        _no_show(session, call_id, CancelReason.SELLER_NO_SHOW, config)
    return {"buyer_no_shows": len(buyer_absent), "seller_no_shows": len(seller_absent)}


def _cancel_batch(session: Session, now: datetime, reason: CancelReason, *conditions: Any) -> list[uuid.UUID]:
    candidates = (
        select(CallRequest.id).where(*conditions).limit(SWEEP_BATCH).with_for_update(skip_locked=True)
    ).scalar_subquery()
    return list(
        session.scalars(
            update(CallRequest)
            .where(CallRequest.id.in_(candidates), *conditions)
            .values(status=RequestStatus.CANCELLED, cancel_reason=reason, cancelled_at=now, updated_at=now)
            .returning(CallRequest.id)
            .execution_options(synchronize_session=False)
        )
    )


def _no_show(session: Session, call_id: uuid.UUID, reason: CancelReason, config: CallConfig) -> None:
    call = load_call(session, call_id)
    assert call is not None
    record_event(session, f"call.{reason.value}", ref_id=call.id, actor=SYSTEM)
    enqueue_after_commit(session, RELEASE_TASK, str(call.id))
    if reason == CancelReason.BUYER_NO_SHOW:
        _earn(session, call, memo="Buyer did not join")
    else:
        enqueue_after_commit(session, REFUND_TASK, str(call.id))
    _notify(session, call, reason.value, email_context(session, call))


def refund_seller_no_show(session: Session, request_id: uuid.UUID, *, gateway: PaymentGateway, now: datetime) -> str:
    """Give the buyer's money back after a seller no-show: a captured payment is refunded
    (``refund:<id>``), a hold never captured is released (``cancel:<id>``). Repeat-safe: the
    idempotency key makes a second gateway call return the first refund, and the state moves once.
    Returns ``refunded``, ``voided``, ``unchanged``, ``skipped`` or ``failed``."""
    call = load_call(session, request_id)
    if call is None or call.cancel_reason != CancelReason.SELLER_NO_SHOW:
        return "skipped"
    transaction = call.transaction
    state = transaction.payment_state
    if state not in (PaymentState.CAPTURED, PaymentState.HELD) or not transaction.stripe_payment_intent_id:
        return "unchanged"
    intent = transaction.stripe_payment_intent_id
    try:
        if state == PaymentState.CAPTURED:
            gateway.refund(intent, idempotency_key=f"refund:{call.id}")
        else:
            gateway.cancel(intent, idempotency_key=f"cancel:{call.id}")
    except PaymentError as error:
        if error.transient:
            raise RetryLater(str(error)) from error
        if error.code != "charge_already_refunded":
            log.error("no-show refund refused", extra={"request_id": str(call.id), "code": error.code})
            record_event(session, REFUND_FAILED_EVENT, ref_id=call.id, actor=SYSTEM, payload={"code": error.code})
            return "failed"
    if state == PaymentState.CAPTURED:
        values: dict[str, Any] = {"refunded_at": now, "refunded_cents": transaction.gross_cents}
        target, outcome = PaymentState.REFUNDED, "refunded"
    else:
        values, target, outcome = {"voided_at": now}, PaymentState.VOIDED, "voided"
    moved = session.execute(
        update(Transaction)
        .where(Transaction.id == transaction.id, Transaction.payment_state == state)
        .values(payment_state=target, updated_at=now, **values)
        .returning(Transaction.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if moved is not None:
        record_event(session, f"payment.{outcome}", ref_id=call.id, actor=SYSTEM, payload={"cause": "seller_no_show"})
    return outcome


# Sweep steps.


def end_overdue_calls(session: Session, now: datetime, settings: Settings) -> dict[str, int]:
    """Sweep step: end every call whose ``ends_at`` has passed (the ETA task was lost or late)."""
    config = CallConfig.from_settings(settings)
    overdue = (CallRequest.status == RequestStatus.ACCEPTED, CallRequest.ends_at <= now)
    candidates = (
        select(CallRequest.id).where(*overdue).limit(SWEEP_BATCH).with_for_update(skip_locked=True)
    ).scalar_subquery()
    ended = list(
        session.scalars(
            update(CallRequest)
            .where(CallRequest.id.in_(candidates), *overdue)
            .values(status=RequestStatus.COMPLETED, ended_at=now, ended_by="sweep", updated_at=now)
            .returning(CallRequest.id)
            .execution_options(synchronize_session=False)
        )
    )
    # The rooms are deleted at once, not after this step's commit: their calls are over by the
    # clock whatever happens to this transaction, and fifty completions below take a while.
    for call_id in ended:
        enqueue_now(RELEASE_TASK, str(call_id))
    for call_id in ended:
        _completed(session, call_id, ended_by="sweep", config=config)
    return {"calls_ended_by_sweep": len(ended)}


def recover_call_work(session: Session, now: datetime, settings: Settings) -> dict[str, int]:
    """Sweep step: re-publish the call's work whose message was lost (broker down at commit, a
    dead worker, retries exhausted). A paid, accepted call without a room gets one; an ended
    call whose room still exists has it deleted; a seller no-show not yet refunded is refunded.
    Every task is repeat-safe; each row is re-published at most once per RECOVER_AFTER."""
    quiet = CallRequest.updated_at < now - RECOVER_AFTER
    provisions = _claim(
        session,
        quiet,
        CallRequest.status == RequestStatus.ACCEPTED,
        CallRequest.room_ready_at.is_(None),
        CallRequest.join_deadline > now,
        CallRequest.transaction_id.in_(_payments_in(PaymentState.CAPTURED)),
    )
    releases = _claim(
        session,
        quiet,
        CallRequest.status.in_((RequestStatus.COMPLETED, RequestStatus.CANCELLED)),
        CallRequest.room_name.is_not(None),
        CallRequest.room_deleted_at.is_(None),
        func.coalesce(CallRequest.ended_at, CallRequest.cancelled_at) > now - RELEASE_GIVE_UP,
    )
    refunds = _claim(
        session,
        quiet,
        CallRequest.cancel_reason == CancelReason.SELLER_NO_SHOW,
        CallRequest.updated_at > now - REFUND_WINDOW,
        CallRequest.transaction_id.in_(_payments_in(PaymentState.CAPTURED, PaymentState.HELD)),
        # A refusal is for an operator to look at, not for the sweep to repeat.
        ~exists().where(EventLog.type == REFUND_FAILED_EVENT, EventLog.ref_id == cast(CallRequest.id, String)),
    )
    touched = {*provisions, *releases, *refunds}
    if touched:
        # Marked as followed up now, so the next sweeps leave them alone for RECOVER_AFTER.
        session.execute(
            update(CallRequest)
            .where(CallRequest.id.in_(touched))
            .values(updated_at=now)
            .execution_options(synchronize_session=False)
        )
    for task, ids in ((PROVISION_TASK, provisions), (RELEASE_TASK, releases), (REFUND_TASK, refunds)):
        for call_id in ids:
            enqueue_after_commit(session, task, str(call_id))
    return {
        "rooms_requeued": len(provisions),
        "room_releases_requeued": len(releases),
        "refunds_requeued": len(refunds),
    }


def _payments_in(*states: PaymentState) -> Any:
    return select(Transaction.id).where(Transaction.payment_state.in_(states))


def _claim(session: Session, *conditions: Any) -> list[uuid.UUID]:
    """Ids matching ``conditions``, locked (skipping rows another sweep holds) until commit."""
    return list(
        session.scalars(
            select(CallRequest.id)
            .where(*conditions)
            .order_by(CallRequest.updated_at)
            .limit(SWEEP_BATCH)
            .with_for_update(skip_locked=True)
        )
    )
