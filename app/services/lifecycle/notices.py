"""The emails a move of a request sends: who is told, with what context.

Each email is an outbox row written in the move's own transaction, keyed
``<cause>:<party>:<request id>`` so a repeated move (a redelivered task, a second click that lost
the race but got this far) queues nothing twice.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.formats import format_money
from app.models import CallRequest, PaymentState, Profile, User
from app.services.outbox import queue_email

PARTIES = ("buyer", "seller")


def email_context(session: Session, call_request: CallRequest) -> dict[str, Any]:
    """What every request email may say. JSON-safe: it is stored in the outbox row."""
    transaction = call_request.transaction
    seller = seller_contact(session, call_request.seller_id)
    return {
        "request_id": str(call_request.id),
        "seller_name": seller["name"],
        "buyer_email": call_request.buyer_email,
        "note": call_request.note,
        "gross_cents": transaction.gross_cents,
        "net_cents": transaction.net_cents,
        "currency": transaction.currency,
        "amount": format_money(transaction.gross_cents, transaction.currency),
        "net_amount": format_money(transaction.net_cents, transaction.currency),
        # Under PAYMENT_CAPTURE=immediate the buyer was charged at checkout and gets a refund
        # instead of a released hold, so the emails must not promise "not charged".
        "refund": transaction.payment_state == PaymentState.CAPTURED,
    }


def seller_contact(session: Session, seller_id: uuid.UUID) -> dict[str, str]:
    row = session.execute(
        select(User.email, Profile.display_name)
        .outerjoin(Profile, Profile.user_id == User.id)
        .where(User.id == seller_id)
    ).one()
    return {"email": row.email, "name": row.display_name or "The seller"}


def notify(
    session: Session,
    call_request: CallRequest,
    cause: str,
    *,
    parties: tuple[str, ...] = PARTIES,
    context: dict[str, Any] | None = None,
    party_context: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Queue ``<cause>_<party>`` for each of ``parties``, each with ``context`` and its own part
    of ``party_context`` (its links, its sentence); the dedupe keys make a repeat a no-op."""
    context = context if context is not None else email_context(session, call_request)
    recipients = {"buyer": call_request.buyer_email}
    if "seller" in parties:
        recipients["seller"] = seller_contact(session, call_request.seller_id)["email"]
    for party in parties:
        queue_email(
            session,
            recipient=recipients[party],
            template=f"{cause}_{party}",
            context=context | (party_context or {}).get(party, {}),
            dedupe_key=f"{cause}:{party}:{call_request.id}",
        )
