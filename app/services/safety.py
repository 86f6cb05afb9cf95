"""Reports after a call: the buyer reports the seller, the seller reports the buyer, an admin resolves.

A report can be filed once per side per call (UNIQUE on call and reporter role, inserted with ON
CONFLICT DO NOTHING, so a double submit files one report) and only once the call is over: it
took place (COMPLETED) or one party did not show up. Reports go to the admin queue and nowhere
else: nothing here ever shows the reported person who reported them, and the admins' email names
the reporter's side only, never an address.

The buyer has no account; their link carries their join credential (``app.services.calls``),
which is checked here before anything is read or written.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.formats import iso
from app.models import CallRequest, CancelReason, Profile, Report, ReporterRole, ReportStatus, RequestStatus, Role, User
from app.refusals import Conflict, Invalid, NotFound
from app.services.audit import record_event, user_actor
from app.services.calls import party_for_token
from app.services.outbox import queue_email

REASONS = {
    "harassment": "Harassment or abuse",
    "inappropriate": "Inappropriate or sexual content",
    "no_show": "Did not show up",
    "spam": "Spam, scam or advertising",
    "other": "Something else",
}
TEXT_MAX = 2000
NOTE_MAX = 2000
QUEUE_LIMIT = 200
NO_SHOWS = (CancelReason.SELLER_NO_SHOW, CancelReason.BUYER_NO_SHOW)


@dataclass(frozen=True)
class ReportDraft:
    reason: str
    text: str


def buyer_call(session: Session, request_id: uuid.UUID, token: str, *, secret_key: str) -> CallRequest:
    """The call whose buyer holds ``token``. A wrong token answers exactly like an unknown id
    (404), so a guessed id reveals nothing."""
    call_request = session.get(CallRequest, request_id, populate_existing=True)
    if call_request is None or party_for_token(secret_key, call_request, token or "") != "buyer":
        raise NotFound("not_found", "This link is not valid. Use the link from your email.")
    return call_request


def sellers_call(session: Session, request_id: uuid.UUID, seller_id: uuid.UUID) -> CallRequest:
    """One of the seller's own calls; anyone else's id is a 404 like a missing one."""
    call_request = session.get(CallRequest, request_id, populate_existing=True)
    if call_request is None or call_request.seller_id != seller_id:
        raise NotFound("not_found", "No such call.")
    return call_request


def seller_name(session: Session, seller_id: uuid.UUID) -> str:
    """What the buyer's pages call the seller (their display name, if they still have a profile)."""
    return session.scalar(select(Profile.display_name).where(Profile.user_id == seller_id)) or "the seller"


def can_report(call_request: CallRequest) -> bool:
    """A report is about a call that is over: it took place, or someone did not show up."""
    if call_request.status == RequestStatus.COMPLETED:
        return True
    return call_request.status == RequestStatus.CANCELLED and call_request.cancel_reason in NO_SHOWS


def has_reported(session: Session, request_id: uuid.UUID, role: ReporterRole) -> bool:
    found = session.scalar(select(Report.id).where(Report.call_request_id == request_id, Report.reporter_role == role))
    return found is not None


def clean_draft(reason: str | None, text: str | None) -> ReportDraft:
    """Validate the form: a known category and at most TEXT_MAX characters of text."""
    reason = (reason or "").strip().lower()
    if reason not in REASONS:
        raise Invalid("invalid", "Choose what happened.", field="reason")
    text = (text or "").strip()
    if len(text) > TEXT_MAX:
        raise Invalid("invalid", f"Keep the description under {TEXT_MAX} characters.", field="text")
    return ReportDraft(reason=reason, text=text)


def file_report(
    session: Session, call_request: CallRequest, role: ReporterRole, draft: ReportDraft, *, now: datetime
) -> Report:
    """File the ``role`` side's report on ``call_request`` (already authorised by the caller).

    Raises ``Conflict`` ``not_reportable`` before the call is over and ``already_reported``
    when this side has reported this call before.
    """
    if not can_report(call_request):
        raise Conflict("not_reportable", "You can report a call once it is over.")
    report_id = session.execute(
        insert(Report)
        .values(
            id=uuid.uuid4(),
            seller_id=call_request.seller_id,
            call_request_id=call_request.id,
            buyer_email=call_request.buyer_email,
            reporter_role=role,
            reason=draft.reason,
            text=draft.text,
            status=ReportStatus.OPEN,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["call_request_id", "reporter_role"])
        .returning(Report.id)
    ).scalar_one_or_none()
    if report_id is None:
        raise Conflict("already_reported", "You have already reported this call. Our team is looking at it.")
    actor = user_actor(call_request.seller_id) if role == ReporterRole.SELLER else "buyer"
    record_event(
        session,
        "report.filed",
        ref_id=report_id,
        actor=actor,
        payload={"requestId": str(call_request.id), "role": role.value, "reason": draft.reason},
    )
    _notify_admins(session, report_id, role, draft.reason)
    return session.get_one(Report, report_id)


@dataclass(frozen=True)
class QueueRow:
    report: Report
    seller_email: str


def list_reports(session: Session, status: ReportStatus | None = ReportStatus.OPEN) -> list[QueueRow]:
    """The admin queue: open reports oldest first (first come, first served); others newest first."""
    query = select(Report, User.email).join(User, User.id == Report.seller_id).limit(QUEUE_LIMIT)
    if status is not None:
        query = query.where(Report.status == status)
    if status == ReportStatus.OPEN:
        query = query.order_by(Report.created_at, Report.id)
    else:
        query = query.order_by(Report.created_at.desc(), Report.id)
    return [QueueRow(report=report, seller_email=email) for report, email in session.execute(query)]


def resolve_report(session: Session, report_id: uuid.UUID, *, admin_id: uuid.UUID, note: str, now: datetime) -> Report:
    """open → resolved with the admin's note; one conditional UPDATE, so a second resolve is a 409."""
    note = (note or "").strip()
    if not note:
        raise Invalid("invalid", "Write a short note on what was done.", field="note")
    if len(note) > NOTE_MAX:
        raise Invalid("invalid", f"Keep the note under {NOTE_MAX} characters.", field="note")
    resolved = session.execute(
        update(Report)
        .where(Report.id == report_id, Report.status == ReportStatus.OPEN)
        .values(status=ReportStatus.RESOLVED, resolution_note=note, resolved_by_id=admin_id, resolved_at=now)
        .returning(Report.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if resolved is None:
        if session.get(Report, report_id) is None:
            raise NotFound("not_found", "No such report.")
        raise Conflict("already_resolved", "This report was already resolved.")
    record_event(session, "admin.report_resolved", ref_id=report_id, actor=user_actor(admin_id))
    return session.get_one(Report, report_id, populate_existing=True)


def serialize_report(report: Report) -> dict[str, object]:
    """The admin API's shape (camelCase, ISO times)."""
    return {
        "id": str(report.id),
        "status": report.status.value,
        "reporterRole": report.reporter_role.value,
        "reason": report.reason,
        "requestId": str(report.call_request_id) if report.call_request_id else None,
        "sellerId": str(report.seller_id),
        "createdAt": iso(report.created_at),
        "resolvedAt": iso(report.resolved_at),
        "resolutionNote": report.resolution_note,
    }


def _notify_admins(session: Session, report_id: uuid.UUID, role: ReporterRole, reason: str) -> None:
    """One email per active admin; the context names the side and the category, never a person."""
    admins = session.execute(select(User.id, User.email).where(User.role == Role.ADMIN, User.deleted_at.is_(None)))
    for admin_id, email in admins:
        queue_email(
            session,
            recipient=email,
            template="report_received_admin",
            context={"report_id": str(report_id), "role": role.value, "reason": REASONS[reason]},
            dedupe_key=f"report_received:{report_id}:{admin_id}",
        )
