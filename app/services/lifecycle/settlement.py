"""The money of an accepted call once it is over: the split, written once, the seller's earning,
the buyer's refund, and an admin's refund of a problem case (a reversal on the seller's balance).

The rules (DESIGN's Settlement table; ``app.services.settlement_text.RULES`` says them to people):

* ran to the end, the buyer ended it, or the buyer never joined: the buyer pays it all; the seller
  earns the net (price less the fee).
* the seller never joined, or both joined but media never connected (a technical failure): all
  back to the buyer (a released hold or a full refund), no fee, nothing for the seller.
* the seller ended it early: the buyer keeps paying only for the seconds both were connected
  (rounded in the buyer's favour; all back under EARLY_END_MINIMUM_SECONDS), and the seller earns
  the kept part less the fee on that part (``app.services.fees.early_end_split``).

``settle`` runs inside the move that ends the call (``clock``), so the split, the earning, the
emails and the refund task commit together or not at all. The split is a ``call_settlements`` row,
UNIQUE per call, whose refund, fee and net add up to the gross (a CHECK constraint says so too).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.models import (
    CallRequest,
    CallSettlement,
    LedgerKind,
    PaymentState,
    ProblemCase,
    ProblemStatus,
    SettlementOutcome,
)
from app.queue import enqueue_after_commit
from app.refusals import Conflict, Invalid, NotFound
from app.services import fees, ledger, media_presence
from app.services.audit import record_event, user_actor
from app.services.lifecycle import payments
from app.services.lifecycle._moves import require_request
from tasks import call_endings as call_ending_tasks
from tasks import problems as problem_tasks

SYSTEM = "system"
KEEP = (SettlementOutcome.COMPLETED, SettlementOutcome.BUYER_ENDED, SettlementOutcome.BUYER_NO_SHOW)
GIVE_BACK = (SettlementOutcome.SELLER_NO_SHOW, SettlementOutcome.TECHNICAL_FAILURE)


def outcome_of_end(call: CallRequest, ended_by: str) -> SettlementOutcome:
    """Who ended the call, and when, decides how it is settled."""
    if ended_by == "buyer":
        return SettlementOutcome.BUYER_ENDED
    early = call.ends_at is not None and call.ended_at is not None and call.ended_at < call.ends_at
    if ended_by == "seller" and early:
        return SettlementOutcome.SELLER_ENDED_EARLY
    return SettlementOutcome.COMPLETED


def settle(
    session: Session, call_id: uuid.UUID, outcome: SettlementOutcome, *, minimum_seconds: int, now: datetime
) -> CallSettlement:
    """Write the call's split, credit the seller's earning and publish the buyer's refund after
    commit; once: a repeat finds the first split and does nothing more."""
    call = require_request(session, call_id)
    transaction = call.transaction
    connected = _connected_seconds(session, call)
    split = _split(call, outcome, connected, minimum_seconds)
    written = session.execute(
        insert(CallSettlement)
        .values(
            id=uuid.uuid4(),
            call_request_id=call.id,
            outcome=outcome,
            connected_seconds=connected,
            gross_cents=transaction.gross_cents,
            refund_cents=split.refund_cents,
            fee_cents=split.fee_cents,
            net_cents=split.net_cents,
            currency=transaction.currency,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["call_request_id"])
        .returning(CallSettlement.id)
    ).scalar_one_or_none()
    settlement = settlement_of(session, call.id)
    assert settlement is not None
    if written is None:
        return settlement
    payload = {"outcome": outcome.value, "connected_seconds": connected, "refund_cents": split.refund_cents}
    record_event(session, "call.settled", ref_id=call.id, actor=SYSTEM, payload=payload)
    if split.net_cents > 0 and transaction.payment_state == PaymentState.CAPTURED:
        ledger.record_earning(session, call, amount_cents=split.net_cents, now=now)
    if split.refund_cents > 0:
        enqueue_after_commit(session, call_ending_tasks.refund_buyer, str(call.id))
    return settlement


def settlement_of(session: Session, call_id: uuid.UUID) -> CallSettlement | None:
    return session.execute(
        select(CallSettlement)
        .where(CallSettlement.call_request_id == call_id)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def buyer_refund_done(session: Session, call: CallRequest, *, voided: bool, now: datetime) -> bool:
    """The gateway gave the settlement's refund back (or released the hold): recorded once, and
    the payment moves (VOIDED, REFUNDED, or a partial refund that keeps it CAPTURED)."""
    settlement = settlement_of(session, call.id)
    if settlement is None:
        return False
    done = session.execute(
        update(CallSettlement)
        .where(CallSettlement.id == settlement.id, CallSettlement.refund_done_at.is_(None))
        .values(refund_done_at=now)
        .returning(CallSettlement.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if done is None:
        return False
    cause = {"cause": settlement.outcome.value}
    if voided:
        payments.mark_voided(session, call, now=now, payload=cause)
    elif settlement.refund_cents >= settlement.gross_cents:
        payments.mark_refunded(session, call, now=now, payload=cause)
    else:
        payments.record_partial_refund(session, call, refunded_total(session, call.id), now=now, payload=cause)
    return True


# --- Problem cases: an admin's refund -----------------------------------------------------------


def refundable_cents(session: Session, call: CallRequest) -> int:
    """What the buyer paid in the end and has not had back: the kept part of a captured payment,
    less what the settlement and earlier cases gave back."""
    if call.transaction.payment_state != PaymentState.CAPTURED:
        return 0
    settlement = settlement_of(session, call.id)
    kept = call.transaction.gross_cents - (settlement.refund_cents if settlement else 0)
    granted = session.scalar(
        select(func.coalesce(func.sum(ProblemCase.refund_cents), 0)).where(
            ProblemCase.call_request_id == call.id, ProblemCase.status == ProblemStatus.REFUNDED
        )
    )
    return max(0, kept - int(granted or 0))


def refund_problem(
    session: Session, case_id: uuid.UUID, *, admin_id: uuid.UUID, amount_cents: int, note: str, now: datetime
) -> ProblemCase:
    """An admin upholds a problem case: OPEN → REFUNDED with ``amount_cents`` (all or part of what
    is left to refund), the seller's share of it reversed in the ledger (one REVERSAL row per case),
    and the gateway's refund published after commit. The call is locked first, so two cases of one
    call cannot together refund more than was paid, and one conditional UPDATE decides the case,
    so two clicks refund once."""
    case = session.get(ProblemCase, case_id)
    if case is None:
        raise NotFound("not_found", "No such problem report.")
    session.execute(select(CallRequest.id).where(CallRequest.id == case.call_request_id).with_for_update())
    if session.scalar(select(ProblemCase.status).where(ProblemCase.id == case_id)) != ProblemStatus.OPEN:
        raise Conflict("already_resolved", "This problem report was already resolved.")
    call = require_request(session, case.call_request_id)
    left = refundable_cents(session, call)
    if not 0 < amount_cents <= left:
        raise Invalid("invalid", f"Refund between 1 cent and what is left to refund ({left} cents).", field="amount")
    reversal = _reversal(session, call, amount_cents)
    values = {"refund_cents": amount_cents, "reversal_cents": reversal, "resolution_note": note}
    _decide_case(session, case_id, ProblemStatus.REFUNDED, admin_id=admin_id, now=now, **values)
    if reversal > 0:
        ledger.record_case_reversal(session, call, case_id, -reversal, memo="Refund after a problem report", now=now)
    payload = {"request_id": str(call.id), "refund_cents": amount_cents, "reversal_cents": reversal}
    record_event(session, "admin.problem_refunded", ref_id=case_id, actor=user_actor(admin_id), payload=payload)
    enqueue_after_commit(session, problem_tasks.refund_problem, str(case_id))
    return session.get_one(ProblemCase, case_id, populate_existing=True)


def problem_refund_done(session: Session, case: ProblemCase, *, now: datetime) -> bool:
    """The gateway refunded the case's amount: recorded once, the payment's refunded total grows."""
    done = session.execute(
        update(ProblemCase)
        .where(ProblemCase.id == case.id, ProblemCase.refund_done_at.is_(None))
        .values(refund_done_at=now)
        .returning(ProblemCase.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if done is None:
        return False
    call = require_request(session, case.call_request_id)
    cause = {"cause": "problem_case", "case_id": str(case.id)}
    payments.record_partial_refund(session, call, refunded_total(session, call.id), now=now, payload=cause)
    return True


def refunded_total(session: Session, call_id: uuid.UUID) -> int:
    """Everything ChatLink has given back on this call so far (done at the gateway)."""
    settlement = settlement_of(session, call_id)
    from_settlement = settlement.refund_cents if settlement and settlement.refund_done_at else 0
    from_cases = session.scalar(
        select(func.coalesce(func.sum(ProblemCase.refund_cents), 0)).where(
            ProblemCase.call_request_id == call_id, ProblemCase.refund_done_at.is_not(None)
        )
    )
    return from_settlement + int(from_cases or 0)


# --- Internals -----------------------------------------------------------------------------------


def _decide_case(
    session: Session, case_id: uuid.UUID, status: ProblemStatus, *, admin_id: uuid.UUID, now: datetime, **values: object
) -> None:
    """OPEN → ``status``, one conditional UPDATE: the second of two decisions matches nothing."""
    decided = session.execute(
        update(ProblemCase)
        .where(ProblemCase.id == case_id, ProblemCase.status == ProblemStatus.OPEN)
        .values(status=status, resolved_by_id=admin_id, resolved_at=now, **values)
        .returning(ProblemCase.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if decided is None:
        raise Conflict("already_resolved", "This problem report was already resolved.")


def _connected_seconds(session: Session, call: CallRequest) -> int:
    if call.started_at is None or call.ended_at is None:
        return 0
    both = media_presence.spans(session, call.id, media_presence.source_for(call), call.ended_at)
    return media_presence.connected_seconds(both, call.started_at, call.ended_at)


def _split(call: CallRequest, outcome: SettlementOutcome, connected: int, minimum_seconds: int) -> fees.Split:
    transaction = call.transaction
    if outcome in GIVE_BACK:
        return fees.refund_all(transaction.gross_cents)
    if outcome in KEEP:
        return fees.keep_all(transaction.gross_cents, transaction.platform_fee_cents)
    assert call.started_at is not None and call.ends_at is not None
    return fees.early_end_split(
        transaction.gross_cents,
        transaction.platform_fee_cents,
        connected_seconds=connected,
        duration_seconds=max(1, int((call.ends_at - call.started_at).total_seconds())),
        minimum_seconds=minimum_seconds,
    )


def _reversal(session: Session, call: CallRequest, refund_cents: int) -> int:
    """The seller's share of this refund, out of what they still hold from the call."""
    earned = ledger.call_entry_cents(session, call.id, LedgerKind.EARNING)
    reversed_before = session.scalar(
        select(func.coalesce(func.sum(ProblemCase.reversal_cents), 0)).where(
            ProblemCase.call_request_id == call.id, ProblemCase.status == ProblemStatus.REFUNDED
        )
    )
    settlement = settlement_of(session, call.id)
    kept = call.transaction.gross_cents - (settlement.refund_cents if settlement else 0)
    share = fees.reversal_share(earned, kept, refund_cents)
    return max(0, min(share, earned - int(reversed_before or 0)))
