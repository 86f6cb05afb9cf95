""" "Report a problem with this call": either party, within 48 hours of the end, once per party.

A case opens in the admin's disputes queue with the call's facts as the server measured them
(each party's connected intervals, who ended the call and when, the settlement's amounts), so the
admin decides on those, not on either party's word. The admin refunds all or part of what the
buyer still has paid (``lifecycle.settlement.refund_problem``: a reversal of the seller's share
in the ledger, the gateway's refund by a task) or closes the case with a note; both parties are
emailed the outcome, and every admin action is audited.

The buyer has no account: their link carries their call credential (``app.services.calls``). The
seller uses theirs, or their session.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, String, cast, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.config import Settings
from app.formats import format_money, iso
from app.integrations.payments import PaymentError, PaymentGateway
from app.models import (
    CallRequest,
    EventLog,
    PaymentState,
    ProblemCase,
    ProblemReason,
    ProblemStatus,
    Role,
    User,
)
from app.queue import RetryLater, enqueue_after_commit
from app.refusals import Conflict, Invalid, NotFound
from app.services import media_presence
from app.services.audit import record_event, user_actor
from app.services.calls import ended_at, party_for_token, problem_window_open
from app.services.lifecycle import load_request, require_request, settlement
from app.services.lifecycle.notices import email_context, seller_contact
from app.services.outbox import queue_email
from app.services.sweeping import Moment, looks_for
from tasks import problems as problem_tasks

log = logging.getLogger(__name__)

REASONS = {
    ProblemReason.NO_CONNECTION.value: "We could not see or hear each other",
    ProblemReason.ENDED_EARLY.value: "The call ended too early",
    ProblemReason.POOR_QUALITY.value: "The sound or video was too poor to talk",
    ProblemReason.NO_SHOW.value: "The other person did not show up",
    ProblemReason.OTHER.value: "Something else",
}
DETAILS_MAX = 1000
NOTE_MAX = 1000
QUEUE_LIMIT = 200
REFUND_FAILED_EVENT = "payment.problem_refund_failed"
RECOVER_AFTER = timedelta(seconds=60)


# --- Who is asking -------------------------------------------------------------------------------


def call_for_token(session: Session, request_id: uuid.UUID, token: str, *, secret_key: str) -> tuple[CallRequest, str]:
    """The call and the party whose credential ``token`` is. A wrong token answers like an unknown
    id (404), so a guessed id reveals nothing."""
    call = load_request(session, request_id)
    party = party_for_token(secret_key, call, token or "") if call is not None else None
    if call is None or party is None:
        raise NotFound("not_found", "This link is not valid. Use the link from your email or the call page.")
    return call, party


def call_for_seller(session: Session, request_id: uuid.UUID, seller_id: uuid.UUID) -> tuple[CallRequest, str]:
    call = load_request(session, request_id)
    if call is None or call.seller_id != seller_id:
        raise NotFound("not_found", "No such call.")
    return call, "seller"


# --- Opening a case ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Draft:
    reason: ProblemReason
    details: str


def clean_draft(reason: object, details: object) -> Draft:
    """A known reason and at most DETAILS_MAX characters of text."""
    value = reason.strip().lower() if isinstance(reason, str) else ""
    if value not in REASONS:
        raise Invalid("invalid", "Choose what went wrong.", field="reason")
    text = details.strip() if isinstance(details, str) else ""
    if len(text) > DETAILS_MAX:
        raise Invalid("invalid", f"Keep it under {DETAILS_MAX} characters.", field="details")
    return Draft(ProblemReason(value), text)


def open_case(session: Session, call: CallRequest, party: str, draft: Draft, *, now: datetime) -> ProblemCase:
    """Open ``party``'s case on ``call`` (already authorised): once per party, within 48 hours of
    the end of a call that reached the room. The admins are emailed."""
    if not problem_window_open(call, now):
        over = ended_at(call)
        if over is not None and call.settlement is not None:
            raise Conflict("too_late", "Problems can be reported up to 48 hours after the end of the call.")
        raise Conflict("not_reportable", "You can report a problem once the call is over.")
    case_id = session.execute(
        insert(ProblemCase)
        .values(
            id=uuid.uuid4(),
            call_request_id=call.id,
            party=party,
            reason=draft.reason,
            details=draft.details,
            facts=call_facts(session, call, now),
            status=ProblemStatus.OPEN,
            created_at=now,
        )
        .on_conflict_do_nothing(constraint="uq_problem_cases_call_request_id_party")
        .returning(ProblemCase.id)
    ).scalar_one_or_none()
    if case_id is None:
        raise Conflict("already_reported", "You have already reported a problem with this call. We are on it.")
    actor = user_actor(call.seller_id) if party == "seller" else "buyer"
    payload = {"request_id": str(call.id), "party": party, "reason": draft.reason.value}
    record_event(session, "problem.opened", ref_id=case_id, actor=actor, payload=payload)
    _notify_admins(session, case_id, party, draft.reason)
    return session.get_one(ProblemCase, case_id)


def has_reported(session: Session, call_id: uuid.UUID, party: str) -> bool:
    found = session.scalar(
        select(ProblemCase.id).where(ProblemCase.call_request_id == call_id, ProblemCase.party == party)
    )
    return found is not None


def call_facts(session: Session, call: CallRequest, now: datetime) -> dict[str, Any]:
    """What the server knows of the call, JSON-safe, for the admin."""
    transaction = call.transaction
    settled = settlement.settlement_of(session, call.id)
    at = call.ended_at or call.cancelled_at or now
    return {
        "status": call.status.value,
        "cancelReason": call.cancel_reason.value if call.cancel_reason else None,
        "provider": call.video_provider,
        "joinDeadline": iso(call.join_deadline),
        "buyerJoinedAt": iso(call.buyer_joined_at),
        "sellerJoinedAt": iso(call.seller_joined_at),
        "startedAt": iso(call.started_at),
        "endsAt": iso(call.ends_at),
        "endedAt": iso(call.ended_at),
        "endedBy": call.ended_by,
        "intervals": media_presence.intervals_as_facts(session, call.id, media_presence.source_for(call), at),
        "payment": {"state": transaction.payment_state.value, "refundedCents": transaction.refunded_cents},
        "settlement": None
        if settled is None
        else {
            "outcome": settled.outcome.value,
            "connectedSeconds": settled.connected_seconds,
            "grossCents": settled.gross_cents,
            "refundCents": settled.refund_cents,
            "feeCents": settled.fee_cents,
            "netCents": settled.net_cents,
            "currency": settled.currency,
        },
    }


# --- The admin's decision ------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseRow:
    case: ProblemCase
    call: CallRequest
    seller_email: str
    refundable_cents: int

    @property
    def currency(self) -> str:
        return self.call.transaction.currency


def get_case(session: Session, case_id: uuid.UUID) -> CaseRow:
    rows = _case_rows(session, ProblemCase.id == case_id)
    if not rows:
        raise NotFound("not_found", "No such problem report.")
    return rows[0]


def list_cases(session: Session, status: ProblemStatus | None = ProblemStatus.OPEN) -> list[CaseRow]:
    """Open cases oldest first (first come, first served); the others newest first."""
    order = ProblemCase.created_at if status == ProblemStatus.OPEN else ProblemCase.created_at.desc()
    condition = ProblemCase.status == status if status is not None else ProblemCase.id.is_not(None)
    return _case_rows(session, condition, order=order)


def _case_rows(session: Session, condition: Any, *, order: Any = ProblemCase.created_at) -> list[CaseRow]:
    rows = session.execute(
        select(ProblemCase, CallRequest, User.email)
        .join(CallRequest, CallRequest.id == ProblemCase.call_request_id)
        .join(User, User.id == CallRequest.seller_id)
        .where(condition)
        .order_by(order, ProblemCase.id)
        .limit(QUEUE_LIMIT)
    ).all()
    return [CaseRow(case, call, email, settlement.refundable_cents(session, call)) for case, call, email in rows]


def refund_case(
    session: Session, case_id: uuid.UUID, *, admin_id: uuid.UUID, amount_cents: int, note: str, now: datetime
) -> ProblemCase:
    """Uphold the case with a refund of ``amount_cents`` (``lifecycle.settlement.refund_problem``);
    both parties are told."""
    case = settlement.refund_problem(
        session, case_id, admin_id=admin_id, amount_cents=amount_cents, note=_clean_note(note), now=now
    )
    _notify_parties(session, case)
    return case


def close_case(session: Session, case_id: uuid.UUID, *, admin_id: uuid.UUID, note: str, now: datetime) -> ProblemCase:
    """OPEN → CLOSED with a note the parties read; one conditional UPDATE, so a repeat is a 409."""
    note = _clean_note(note)
    if not note:
        raise Invalid("invalid", "Write a short note the parties will read.", field="note")
    closed = session.execute(
        update(ProblemCase)
        .where(ProblemCase.id == case_id, ProblemCase.status == ProblemStatus.OPEN)
        .values(status=ProblemStatus.CLOSED, resolution_note=note, resolved_by_id=admin_id, resolved_at=now)
        .returning(ProblemCase.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if closed is None:
        if session.get(ProblemCase, case_id) is None:
            raise NotFound("not_found", "No such problem report.")
        raise Conflict("already_resolved", "This problem report was already resolved.")
    record_event(session, "admin.problem_closed", ref_id=case_id, actor=user_actor(admin_id), payload={"note": note})
    case = session.get_one(ProblemCase, case_id, populate_existing=True)
    _notify_parties(session, case)
    return case


def pay_problem_refund(session: Session, case_id: uuid.UUID, *, gateway: PaymentGateway, now: datetime) -> str:
    """The gateway's side of an upheld case: refund its amount (``refund:problem:<case id>``, so a
    retry is answered with the first refund), then record it once. Returns ``refunded``,
    ``skipped`` (not a refunded case, or already done) or ``failed`` (refused for good)."""
    case = session.get(ProblemCase, case_id, populate_existing=True)
    if case is None or case.status != ProblemStatus.REFUNDED or case.refund_done_at is not None:
        return "skipped"
    call = require_request(session, case.call_request_id)
    intent = call.transaction.stripe_payment_intent_id
    try:
        if intent is None or call.transaction.payment_state != PaymentState.CAPTURED:
            raise PaymentError("nothing captured to refund", transient=False, code="not_captured")
        gateway.refund(intent, idempotency_key=f"refund:problem:{case.id}", amount_cents=case.refund_cents)
    except PaymentError as error:
        if error.transient:
            raise RetryLater(str(error)) from error
        log.error("problem refund refused", extra={"case_id": str(case.id), "code": error.code})
        record_event(session, REFUND_FAILED_EVENT, ref_id=case.id, actor="system", payload={"code": error.code})
        return "failed"
    settlement.problem_refund_done(session, case, now=now)
    return "refunded"


def _refund_lost(now: Moment) -> Select[tuple[uuid.UUID]]:
    return select(ProblemCase.id).where(
        ProblemCase.status == ProblemStatus.REFUNDED,
        ProblemCase.refund_done_at.is_(None),
        func.coalesce(ProblemCase.sweep_lease_until, ProblemCase.resolved_at + RECOVER_AFTER) <= now,
        ~exists().where(EventLog.type == REFUND_FAILED_EVENT, EventLog.ref_id == cast(ProblemCase.id, String)),
    )


@looks_for(lambda now: _refund_lost(now).exists())
def recover_problem_refunds(session: Session, now: datetime, settings: Settings) -> dict[str, int]:
    """Sweep step: re-publish the refunds of upheld cases whose task was lost, a minute after the
    decision and then at most once a minute; a refusal is left to an operator."""
    due = list(session.scalars(_refund_lost(now).limit(QUEUE_LIMIT).with_for_update(skip_locked=True)))
    if due:
        session.execute(
            update(ProblemCase)
            .where(ProblemCase.id.in_(due))
            .values(sweep_lease_until=now + RECOVER_AFTER)
            .execution_options(synchronize_session=False)
        )
    for case_id in due:
        enqueue_after_commit(session, problem_tasks.refund_problem, str(case_id))
    return {"problem_refunds_requeued": len(due)}


def serialize_case(row: CaseRow) -> dict[str, Any]:
    """The admin API's shape (camelCase, ISO times, cents)."""
    case = row.case
    return {
        "id": str(case.id),
        "requestId": str(case.call_request_id),
        "party": case.party,
        "reason": case.reason.value,
        "details": case.details,
        "status": case.status.value,
        "facts": case.facts,
        "refundableCents": row.refundable_cents,
        "refundCents": case.refund_cents,
        "reversalCents": case.reversal_cents,
        "resolutionNote": case.resolution_note,
        "createdAt": iso(case.created_at),
        "resolvedAt": iso(case.resolved_at),
    }


# --- Internals -----------------------------------------------------------------------------------


def _clean_note(note: str | None) -> str:
    note = (note or "").strip()
    if len(note) > NOTE_MAX:
        raise Invalid("invalid", f"Keep the note under {NOTE_MAX} characters.", field="note")
    return note


def _notify_admins(session: Session, case_id: uuid.UUID, party: str, reason: ProblemReason) -> None:
    admins = session.execute(select(User.id, User.email).where(User.role == Role.ADMIN, User.deleted_at.is_(None)))
    for admin_id, email in admins:
        queue_email(
            session,
            recipient=email,
            template="problem_opened_admin",
            context={"case_id": str(case_id), "party": party, "reason": REASONS[reason.value]},
            dedupe_key=f"problem_opened:{case_id}:{admin_id}",
        )


def _notify_parties(session: Session, case: ProblemCase) -> None:
    """Both parties learn the outcome: the refund (and what it takes from the seller) or the note."""
    call = require_request(session, case.call_request_id)
    currency = call.transaction.currency
    context = email_context(session, call) | {
        "reporter": case.party,
        "reason": REASONS[case.reason.value],
        "refunded": case.status == ProblemStatus.REFUNDED,
        "refund_amount": format_money(case.refund_cents, currency),
        "reversal_cents": case.reversal_cents,
        "reversal_amount": format_money(case.reversal_cents, currency),
        "note": case.resolution_note or "",
    }
    recipients = {"buyer": call.buyer_email, "seller": seller_contact(session, call.seller_id)["email"]}
    for party, recipient in recipients.items():
        queue_email(
            session,
            recipient=recipient,
            template=f"problem_resolved_{party}",
            context=context,
            dedupe_key=f"problem_resolved:{party}:{case.id}",
        )
