"""The seller's requests as they read them: the list, the filter, the API's shape, the join link.

Every move of a request (accept, decline, expire, ...) is made by ``app.services.lifecycle``; this
module only reads.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from app.formats import iso
from app.models import CallRequest, RequestStatus
from app.services.calls import join_url

LIST_LIMIT = 200


def parse_status(value: str | None) -> RequestStatus | None:
    """``"pending"`` / ``"PENDING"`` → ``RequestStatus.PENDING``; empty or ``"all"`` → None.
    Raises ``ValueError`` for anything else."""
    text = (value or "").strip().upper()
    if text in ("", "ALL"):
        return None
    return RequestStatus(text)


def list_requests(
    session: Session, seller_id: uuid.UUID, status: RequestStatus | None = None, *, limit: int = LIST_LIMIT
) -> list[CallRequest]:
    """The seller's requests, newest first, with their transactions (one query)."""
    query = (
        select(CallRequest)
        .options(joinedload(CallRequest.transaction))
        .where(CallRequest.seller_id == seller_id)
        .order_by(CallRequest.created_at.desc(), CallRequest.id)
        .limit(limit)
    )
    if status is not None:
        query = query.where(CallRequest.status == status)
    return list(session.scalars(query))


def accepted_join_url(call_request: CallRequest, party: str, *, app_url: str, secret_key: str) -> str | None:
    """A party's link to the call page while the request is ACCEPTED; None otherwise.
    The credential itself is ``app.services.calls``'s business."""
    if call_request.status != RequestStatus.ACCEPTED or not call_request.join_key:
        return None
    return join_url(app_url, secret_key, call_request, party)


def serialize_request(call_request: CallRequest, *, join_url: str | None = None) -> dict[str, Any]:
    """The API's shape: camelCase keys, ISO 8601 UTC times, integer cents."""
    transaction = call_request.transaction
    return {
        "id": str(call_request.id),
        "status": call_request.status.value,
        "buyerEmail": call_request.buyer_email,
        "note": call_request.note,
        "grossCents": transaction.gross_cents,
        "netCents": transaction.net_cents,
        "currency": transaction.currency,
        "createdAt": iso(call_request.created_at),
        "expiresAt": iso(call_request.expires_at),
        "acceptedAt": iso(call_request.accepted_at),
        "startedAt": iso(call_request.started_at),
        "endsAt": iso(call_request.ends_at),
        "endedAt": iso(call_request.ended_at),
        "cancelReason": call_request.cancel_reason.value if call_request.cancel_reason else None,
        "joinUrl": join_url,
        # Scheduling: the buyer's proposed starts (empty: as soon as possible), the start the
        # seller accepted (null: right away), and a pending request to move it.
        "proposedStarts": [iso(start) for start in call_request.proposed_starts or ()],
        "scheduledStart": iso(call_request.scheduled_start),
        "joinOpensAt": iso(call_request.join_opens_at),
        "buyerTimeZone": call_request.buyer_time_zone,
        "reschedule": _reschedule(call_request),
    }


def _reschedule(call_request: CallRequest) -> dict[str, Any] | None:
    if call_request.reschedule_start is None:
        return None
    return {
        "startAt": iso(call_request.reschedule_start),
        "askedBy": call_request.reschedule_by,
        "answered": call_request.reschedule_answered_at is not None,
    }
