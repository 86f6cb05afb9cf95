"""The executor of the tables in ``table.py``: the only code that writes a request's status or a
payment's state, each time as ONE conditional UPDATE from the move's source states.

Also the one loader of a request row, the sweep's claim on rows it follows up (a lease in its own
column, so an ordinary write never delays recovery work), and the one announcer of a change to the
parties' open pages (``announce``: every move that changed a row announces it after commit).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, exists, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session, joinedload

from app import live
from app.models import CallRequest, Transaction
from app.services.lifecycle.table import PAYMENT_MOVES, REQUEST_MOVES
from app.services.sweeping import Moment

SWEEP_BATCH = 100


def move_requests(
    session: Session,
    move: str,
    *conditions: ColumnElement[bool],
    now: datetime,
    values: Mapping[str, Any] | None = None,
) -> list[uuid.UUID]:
    """Apply ``move`` to every request matching ``conditions`` that is in one of its source states;
    the ids of the rows that moved (none when another transition won)."""
    spec = REQUEST_MOVES[move]
    statement = (
        update(CallRequest)
        .where(CallRequest.status.in_(spec.sources), *conditions)
        .values(status=spec.target, updated_at=now, **(values or {}))
        .returning(CallRequest.id)
        .execution_options(synchronize_session=False)
    )
    moved = list(session.scalars(statement))
    announce(session, moved)
    return moved


def move_request(
    session: Session,
    move: str,
    request_id: uuid.UUID,
    *conditions: ColumnElement[bool],
    now: datetime,
    values: Mapping[str, Any] | None = None,
) -> bool:
    """``move_requests`` for one request: True when this call made the move."""
    return bool(move_requests(session, move, CallRequest.id == request_id, *conditions, now=now, values=values))


def move_payment(
    session: Session,
    move: str,
    transaction_id: uuid.UUID,
    *conditions: ColumnElement[bool],
    now: datetime,
    values: Mapping[str, Any] | None = None,
) -> bool:
    """Apply ``move`` to one transaction if it is in a source state; True when this call made it."""
    spec = PAYMENT_MOVES[move]
    statement = (
        update(Transaction)
        .where(Transaction.id == transaction_id, Transaction.payment_state.in_(spec.sources), *conditions)
        .values(payment_state=spec.target, updated_at=now, **(values or {}))
        .returning(Transaction.id)
        .execution_options(synchronize_session=False)
    )
    moved = session.execute(statement).scalar_one_or_none() is not None
    if moved:
        announce(session, session.scalars(select(CallRequest.id).where(CallRequest.transaction_id == transaction_id)))
    return moved


def announce(session: Session, request_ids: Iterable[uuid.UUID]) -> None:
    """Tell the open pages of these requests' parties (the seller's dashboard and requests page,
    the buyer's status page) that something changed, once the transaction commits. Called by
    every move above and by the creation of a request: the one place changes are published."""
    ids = list(request_ids)
    if not ids or not live.enabled():
        return
    rows = session.execute(
        select(CallRequest.seller_id, Transaction.stripe_checkout_session_id)
        .join(Transaction, Transaction.id == CallRequest.transaction_id)
        .where(CallRequest.id.in_(ids))
    ).all()
    channels = {live.seller_channel(row.seller_id) for row in rows}
    channels |= {live.checkout_channel(row.stripe_checkout_session_id) for row in rows}
    live.announce_after_commit(session, channels)


def any_request(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    """Whether a request matches ``conditions``: the probe of a sweep step that moves them
    (``due_batch``) or claims them (``claim``)."""
    return select(CallRequest.id).where(*conditions).exists()


def due_batch(*conditions: ColumnElement[bool], limit: int = SWEEP_BATCH) -> ColumnElement[bool]:
    """``id IN (a batch of matching rows, locked, skipping those another sweep or a click holds)``:
    a sweep's transaction stays short, and a row a concurrent transition holds is decided by it."""
    batch = select(CallRequest.id).where(*conditions).limit(limit).with_for_update(skip_locked=True)
    return CallRequest.id.in_(batch.scalar_subquery())


def load_request(session: Session, request_id: uuid.UUID | None) -> CallRequest | None:
    """The request and its transaction as the database has them now (a bulk UPDATE does not
    refresh loaded objects, so every read after a move goes through here)."""
    if request_id is None:
        return None
    return session.execute(
        select(CallRequest)
        .options(joinedload(CallRequest.transaction))
        .where(CallRequest.id == request_id)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def follow_up_due(
    since: ColumnElement[Any] | InstrumentedAttribute[Any], now: Moment, grace: timedelta
) -> ColumnElement[bool]:
    """A sweep may re-publish a request's work ``grace`` after the transition that first published
    it (``since``), and then once per lease (``lease_rows``): the work has had its chance to run."""
    return func.coalesce(CallRequest.sweep_lease_until, since + grace) <= now


def require_request(session: Session, request_id: uuid.UUID) -> CallRequest:
    """``load_request`` for a row known to exist (it just moved, or its credential was checked)."""
    call_request = load_request(session, request_id)
    if call_request is None:
        raise LookupError(f"call request {request_id} vanished")
    return call_request


def claim(session: Session, *conditions: ColumnElement[bool]) -> list[uuid.UUID]:
    """Ids of requests matching ``conditions`` (on the transaction: through ``paid_with``),
    oldest first, locked until commit, skipping rows another sweep holds."""
    return list(
        session.scalars(
            select(CallRequest.id)
            .where(*conditions)
            .order_by(CallRequest.created_at)
            .limit(SWEEP_BATCH)
            .with_for_update(skip_locked=True)
        )
    )


def paid_with(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    """The request's transaction meets ``conditions``."""
    return exists().where(Transaction.id == CallRequest.transaction_id, *conditions)


def lease_rows(session: Session, ids: Collection[uuid.UUID], until: datetime) -> None:
    """Leave these rows alone until ``until``: the work just re-published is given time to run."""
    if ids:
        session.execute(
            update(CallRequest)
            .where(CallRequest.id.in_(ids))
            .values(sweep_lease_until=until)
            .execution_options(synchronize_session=False)
        )
