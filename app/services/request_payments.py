"""Moving the money after the seller's decision: capture on accept, release on decline or expiry.

These run in tasks, never in a web request, because they call the payment gateway. Each gateway
call carries a deterministic idempotency key (``capture:<request id>``, ``cancel:<request id>``,
``refund:<request id>``), and each state change is one conditional UPDATE from the state it
leaves, so a task that runs twice (a redelivery, a crash between the gateway call and the commit,
two workers) moves the money once and records it once.

Transient gateway errors become ``GatewayUnavailable``, which the task retries with backoff.
Permanent ones are decided here: a capture the gateway refuses cancels the call
(payment_failed); a hold that cannot be cancelled is reconciled with what the gateway says the
PaymentIntent is now.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, String, cast, exists, func, or_, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.config import Settings
from app.integrations.payments import PaymentError, PaymentGateway
from app.models import CallRequest, CancelReason, EventLog, PaymentState, RequestStatus, Transaction
from app.queue import RetryLater, enqueue_after_commit
from app.services.audit import record_event
from app.services.lifecycle import clock
from app.services.lifecycle import payments as lifecycle_payments
from app.services.lifecycle._moves import any_request, claim, follow_up_due, lease_rows, load_request, paid_with
from app.services.sweeping import Moment, looks_for
from tasks import calls as call_tasks
from tasks import request_payments as payment_tasks

log = logging.getLogger(__name__)

# Cancelled requests whose payment this module gives back. Seller no-shows are refunded by the
# call's own code and a buyer no-show is the seller's to keep.
RELEASE_REASONS = (
    CancelReason.EXPIRED,
    CancelReason.PAYMENT_FAILED,
    CancelReason.BLOCKED,
    CancelReason.SUSPENDED,
    CancelReason.BUYER_CANCELLED,
)
RELEASE_FAILED_EVENT = "payment.release_failed"
# The sweep re-publishes payment work still undone this long after the transition that published
# it, and then no more often than that (the row's sweep lease).
FOLLOW_UP_AFTER = timedelta(seconds=120)
# How far back the every-few-seconds sweep looks for releases still undone. Without a bound each
# sweep would re-read every declined or cancelled request of the platform's history
# (bench/scale.py: 600 ms on a year of calls); within it, it reads six hours' worth (a year of a
# busy platform: about a hundred rows, where two days' were 850 and 2.4 ms of every sweep). Six
# hours outlast the release task's own retries and a gateway outage of the usual kind; older
# work is not abandoned: the hourly full sweep (``payment_followups_all_history``) looks at all
# of it.
FOLLOW_UP_WINDOW = timedelta(hours=6)
SYSTEM = "system"


class GatewayUnavailable(RetryLater):
    """The gateway failed in a way a later attempt may fix (network, 429, 5xx): retry with backoff."""


def capture_accepted_payment(session: Session, request_id: uuid.UUID, *, gateway: PaymentGateway, now: datetime) -> str:
    """Capture the hold of an ACCEPTED request, then have the room provisioned.

    Returns ``captured``, ``failed`` (the request is now CANCELLED, payment_failed) or ``skipped``
    (the request is gone or no longer ACCEPTED). Already captured (a repeat, or
    ``PAYMENT_CAPTURE=immediate``) → the room task is published again, which is repeat-safe.
    """
    call_request = load_request(session, request_id)
    if call_request is None or call_request.status != RequestStatus.ACCEPTED:
        return "skipped"
    state = call_request.transaction.payment_state
    if state == PaymentState.HELD:
        if _capture(session, call_request, gateway, now) == "failed":
            return "failed"
    elif state != PaymentState.CAPTURED:
        # Voided, refunded or disputed before the call: there is no money to take.
        clock.mark_payment_failed(session, call_request.id, now=now, code=f"payment_{state.value}")
        return "failed"
    enqueue_after_commit(session, call_tasks.provision_room, str(call_request.id))
    return "captured"


def release_payment(session: Session, request_id: uuid.UUID, *, gateway: PaymentGateway, now: datetime) -> str:
    """Give the buyer's money back for a DECLINED request or a CANCELLED one (expired,
    payment_failed, blocked, suspended, buyer_cancelled in time): a hold is cancelled (VOIDED),
    a captured payment (under ``PAYMENT_CAPTURE=immediate``, or a scheduled call cancelled in
    time) is refunded (REFUNDED).

    Returns ``voided``, ``refunded``, ``unchanged`` (already settled), ``skipped`` (not a request
    this applies to) or ``failed`` (the gateway refused for good; recorded for an operator).
    """
    call_request = load_request(session, request_id)
    if call_request is None or not _releasable(call_request):
        return "skipped"
    state = call_request.transaction.payment_state
    if state == PaymentState.HELD:
        return _void(session, call_request, gateway, now)
    if state == PaymentState.CAPTURED:
        return _refund(session, call_request, gateway, now)
    return "unchanged"


def _capture_owed(now: Moment) -> tuple[ColumnElement[bool], ...]:
    """An accepted call whose hold is still uncaptured."""
    return (
        follow_up_due(CallRequest.accepted_at, now, FOLLOW_UP_AFTER),
        CallRequest.status == RequestStatus.ACCEPTED,
        paid_with(Transaction.payment_state == PaymentState.HELD),
        CallRequest.join_deadline > now,  # past it, the call can no longer happen
    )


def _release_owed(now: Moment, look_back: timedelta | None) -> tuple[ColumnElement[bool], ...]:
    """A declined or cancelled request whose money is still held or taken, ``look_back`` into the
    past (None: all of history)."""
    since = now - look_back if look_back is not None else None
    return (
        follow_up_due(func.coalesce(CallRequest.declined_at, CallRequest.cancelled_at), now, FOLLOW_UP_AFTER),
        # Each arm names its status and its time, so each is served by its partial index.
        ((CallRequest.status == RequestStatus.DECLINED) & _after(CallRequest.declined_at, since))
        | (
            (CallRequest.status == RequestStatus.CANCELLED)
            & CallRequest.cancel_reason.in_(RELEASE_REASONS)
            & _after(CallRequest.cancelled_at, since)
        ),
        paid_with(Transaction.payment_state.in_((PaymentState.HELD, PaymentState.CAPTURED))),
        ~exists().where(EventLog.type == RELEASE_FAILED_EVENT, EventLog.ref_id == cast(CallRequest.id, String)),
    )


@looks_for(lambda now: or_(any_request(*_capture_owed(now)), any_request(*_release_owed(now, FOLLOW_UP_WINDOW))))
def payment_followups(
    session: Session, now: datetime, settings: Settings, *, look_back: timedelta | None = FOLLOW_UP_WINDOW
) -> dict[str, int]:
    """Sweep step: re-publish captures and releases whose task was lost (broker down at commit,
    retries exhausted during a gateway outage). Both tasks are repeat-safe, so a duplicate of a
    task still in flight is harmless. Releases are looked for ``look_back`` into the past (None:
    all of history)."""
    captures = claim(session, *_capture_owed(now))
    releases = claim(session, *_release_owed(now, look_back))
    lease_rows(session, {*captures, *releases}, now + FOLLOW_UP_AFTER)
    for request_id in captures:
        enqueue_after_commit(session, payment_tasks.capture_accepted, str(request_id))
    for request_id in releases:
        enqueue_after_commit(session, payment_tasks.release_hold, str(request_id))
    return {"captures_requeued": len(captures), "releases_requeued": len(releases)}


def payment_followups_all_history(session: Session, now: datetime, settings: Settings) -> dict[str, int]:
    """Hourly step: ``payment_followups`` over all of history, so a release still undone after the
    sweep's look-back (a gateway down for days) is published again, never forgotten."""
    return payment_followups(session, now, settings, look_back=None)


def _after(moment: InstrumentedAttribute[datetime | None], since: Moment | None) -> ColumnElement[bool]:
    return moment > since if since is not None else true()


def _capture(session: Session, call_request: CallRequest, gateway: PaymentGateway, now: datetime) -> str:
    transaction = call_request.transaction
    try:
        gateway.capture(_intent_id(transaction), idempotency_key=f"capture:{call_request.id}")
    except PaymentError as error:
        if error.transient:
            raise GatewayUnavailable(str(error)) from error
        log.warning("capture refused", extra={"request_id": str(call_request.id), "code": error.code})
        record_event(
            session, "payment.capture_failed", ref_id=call_request.id, actor=SYSTEM, payload={"code": error.code}
        )
        clock.mark_payment_failed(session, call_request.id, now=now, code=error.code)
        return "failed"
    lifecycle_payments.mark_captured(session, call_request, now=now)
    return "captured"


def _void(session: Session, call_request: CallRequest, gateway: PaymentGateway, now: datetime) -> str:
    transaction = call_request.transaction
    try:
        gateway.cancel(_intent_id(transaction), idempotency_key=f"cancel:{call_request.id}")
    except PaymentError as error:
        if error.transient:
            raise GatewayUnavailable(str(error)) from error
        return _reconcile(session, call_request, gateway, now, error)
    lifecycle_payments.mark_voided(session, call_request, now=now)
    return "voided"


def _refund(session: Session, call_request: CallRequest, gateway: PaymentGateway, now: datetime) -> str:
    transaction = call_request.transaction
    try:
        refund_status = gateway.refund(_intent_id(transaction), idempotency_key=f"refund:{call_request.id}")
    except PaymentError as error:
        if error.transient:
            raise GatewayUnavailable(str(error)) from error
        if error.code != "charge_already_refunded":
            return _release_failed(session, call_request, error)
        refund_status = "succeeded"
    lifecycle_payments.mark_refunded(session, call_request, now=now, payload={"refund_status": refund_status})
    return "refunded"


def _reconcile(
    session: Session, call_request: CallRequest, gateway: PaymentGateway, now: datetime, error: PaymentError
) -> str:
    """A hold that cannot be cancelled has usually gone already: it lapsed (card holds last about
    seven days), was cancelled in the Stripe dashboard, or was captured. Follow what the gateway
    says the PaymentIntent is now."""
    transaction = call_request.transaction
    try:
        intent_status = gateway.retrieve_checkout(transaction.stripe_checkout_session_id).payment_intent_status
    except PaymentError as lookup_error:
        if lookup_error.transient:
            raise GatewayUnavailable(str(lookup_error)) from lookup_error
        intent_status = None
    if intent_status == "canceled":
        lifecycle_payments.mark_voided(session, call_request, now=now, payload={"reconciled": True})
        return "voided"
    if intent_status == "succeeded":
        return _refund(session, call_request, gateway, now)
    return _release_failed(session, call_request, error)


def _release_failed(session: Session, call_request: CallRequest, error: PaymentError) -> str:
    # Recorded once per request; the sweep does not retry a request with this event, an operator does.
    log.error("payment release refused", extra={"request_id": str(call_request.id), "code": error.code})
    record_event(session, RELEASE_FAILED_EVENT, ref_id=call_request.id, actor=SYSTEM, payload={"code": error.code})
    return "failed"


def _releasable(call_request: CallRequest) -> bool:
    if call_request.status == RequestStatus.DECLINED:
        return True
    return call_request.status == RequestStatus.CANCELLED and call_request.cancel_reason in RELEASE_REASONS


def _intent_id(transaction: Transaction) -> str:
    if not transaction.stripe_payment_intent_id:
        raise PaymentError("the transaction has no PaymentIntent", transient=False, code="missing_payment_intent")
    return transaction.stripe_payment_intent_id
