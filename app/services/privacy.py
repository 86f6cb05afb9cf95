"""Privacy: a seller's data export, account deletion, and an admin's erasure of a buyer's email.

Deletion keeps the money trail (transactions, ledger, payouts, ratings, reports) because
accounting and disputes need it, and erases the person: the email becomes
``deleted-<id>@invalid`` in every text and JSON column of every table, the profile and photo
go, the password stops working and every session ends. Buyers' emails in the seller's requests
stay: they belong to the buyers, who may still need their receipts and refunds.

Erasure of a buyer replaces the address everywhere with ``erased-<sha256 prefix>@invalid`` (the
same tombstone the block list recognises, so a block survives the erasure). "Everywhere" is
computed from the models, not listed by hand, so a table added later is covered too.
"""

from __future__ import annotations

import enum
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from urllib.parse import quote

from sqlalchemy import (
    Column,
    ColumnElement,
    Enum,
    String,
    Table,
    Text,
    TextClause,
    and_,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Base, affected_rows
from app.formats import iso
from app.models import (
    Block,
    CallRequest,
    ConnectAccount,
    EmailStatus,
    EventLog,
    LedgerEntry,
    OutboxEmail,
    PasswordResetToken,
    PayoutRequest,
    PayoutSettings,
    Profile,
    Rating,
    Report,
    ReporterRole,
    RequestStatus,
    SellerAvailability,
    Transaction,
    User,
)
from app.refusals import Conflict, Forbidden, Invalid, NotFound
from app.services.accounts import password_matches
from app.services.audit import record_event, user_actor
from app.services.blocks import erased_email, normalise_email
from app.services.lifecycle.decisions import decline_all_pending
from app.services.outbox import queue_email
from app.services.photos import queue_photo_deletion
from app.services.sweeping import looks_for

FAREWELL_TEMPLATE = "account_deleted"
EXPORT_EVENTS_LIMIT = 5000
# Secrets and one-time keys that an export must not hand out (a join key opens a call), and the
# buyer's Checkout Session id: it is the buyer's, appears in their status page's address, and a
# seller has no use for it (the PaymentIntent id stays, for matching payouts and disputes).
_NOT_EXPORTED = {
    "password_hash",
    "join_key",
    "submission_key",
    "checkout_url",
    "browser_key_hash",
    "failed_logins",
    "lockouts",
    "session_version",
    "stripe_checkout_session_id",
    # The payout method is exported by its last four characters only, like everywhere else.
    "method_ciphertext",
}
# An address inside text: not preceded by a character of a local part, not followed by more domain.
_BEFORE = r"(?<![A-Za-z0-9._%+-])"
_AFTER = r"(?![A-Za-z0-9_-]|\.[A-Za-z0-9])"


def deleted_email(user_id: uuid.UUID) -> str:
    return f"deleted-{user_id}@invalid"


# --- Export -----------------------------------------------------------------------------------


def export_seller_data(session: Session, user_id: uuid.UUID, *, now: datetime) -> dict[str, Any]:
    """Everything ChatLink holds about the seller, as JSON-ready data (camelCase keys, ISO times,
    integer cents). Reports filed against them are left out: a reporter is never revealed."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("not_found", "No such account.")

    def rows(model: type[Base], *where: Any, order: Any) -> list[dict[str, Any]]:
        return [_row(item) for item in session.scalars(select(model).where(*where).order_by(order))]

    return {
        "exportedAt": iso(now),
        "account": _row(user),
        "profile": _row(user.profile) if user.profile else None,
        "requests": rows(CallRequest, CallRequest.seller_id == user_id, order=CallRequest.created_at),
        "transactions": rows(Transaction, Transaction.seller_id == user_id, order=Transaction.created_at),
        "ledger": rows(LedgerEntry, LedgerEntry.seller_id == user_id, order=LedgerEntry.created_at),
        "payouts": rows(PayoutRequest, PayoutRequest.seller_id == user_id, order=PayoutRequest.created_at),
        "payoutSettings": rows(PayoutSettings, PayoutSettings.seller_id == user_id, order=PayoutSettings.created_at),
        "availability": rows(
            SellerAvailability, SellerAvailability.seller_id == user_id, order=SellerAvailability.created_at
        ),
        "connectAccount": rows(ConnectAccount, ConnectAccount.seller_id == user_id, order=ConnectAccount.created_at),
        "blocks": rows(Block, Block.seller_id == user_id, order=Block.created_at),
        "reportsFiled": rows(
            Report, Report.seller_id == user_id, Report.reporter_role == ReporterRole.SELLER, order=Report.created_at
        ),
        "ratingsReceived": rows(Rating, Rating.seller_id == user_id, order=Rating.created_at),
        "activity": [
            _row(event)
            for event in session.scalars(
                select(EventLog)
                .where(EventLog.actor == user_actor(user_id))
                .order_by(EventLog.created_at)
                .limit(EXPORT_EVENTS_LIMIT)
            )
        ],
    }


def _row(item: Base) -> dict[str, Any]:
    table = cast(Table, item.__table__)
    return {
        _camel(column.key): _json_value(getattr(item, column.key))
        for column in table.columns
        if column.key not in _NOT_EXPORTED
    }


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


# --- Account deletion -------------------------------------------------------------------------


def delete_account(session: Session, user_id: uuid.UUID, *, password: str, now: datetime) -> str:
    """Delete the seller's account after checking ``password``; returns the tombstone email.

    Refused (409) while an accepted call has not happened yet: it ends within the join window
    on its own (a seller no-show refunds the buyer), and then the account can go.
    """
    user = _check_deletable(session, user_id, password)
    actor = user_actor(user_id)
    email, tombstone = user.email, deleted_email(user_id)
    decline_all_pending(session, user_id, now=now, actor=actor)
    _remove_profile(session, user_id, now=now)
    session.execute(delete(Block).where(Block.seller_id == user_id))
    session.execute(delete(PasswordResetToken).where(PasswordResetToken.user_id == user_id))
    # The bank account or PayPal address goes with the account (payouts already made keep their rows).
    session.execute(delete(PayoutSettings).where(PayoutSettings.seller_id == user_id))
    _silence_mail_to(session, email, reason="account deleted")
    replace_email_everywhere(session, email, tombstone)
    _retire_user(session, user, tombstone, now)
    record_event(session, "account.deleted", ref_id=user_id, actor=actor)
    # The goodbye is the one row that holds the old address; scrub_farewell_emails erases it
    # once it has been delivered.
    queue_email(
        session,
        recipient=email,
        template=FAREWELL_TEMPLATE,
        context={"user_id": str(user_id)},
        dedupe_key=f"account_deleted:{user_id}",
    )
    return tombstone


def _check_deletable(session: Session, user_id: uuid.UUID, password: str) -> User:
    """The account, locked for the deletion, once the password and the calls allow it."""
    user = session.scalar(
        select(User).where(User.id == user_id).with_for_update().execution_options(populate_existing=True)
    )
    if user is None or user.deleted_at is not None:
        raise NotFound("not_found", "No such account.")
    if not password_matches(password or "", user.password_hash):
        raise Forbidden("wrong_password", "That password is not right.", field="password")
    accepted = select(CallRequest.id).where(
        CallRequest.seller_id == user_id, CallRequest.status == RequestStatus.ACCEPTED
    )
    if session.scalar(accepted.limit(1)):
        raise Conflict(
            "call_in_progress", "You have an accepted call that has not finished. Try again once it is over."
        )
    return user


def _retire_user(session: Session, user: User, tombstone: str, now: datetime) -> None:
    """The user row stays (the money trail points at it) without anything that identifies or
    authenticates anyone; bumping ``session_version`` ends every session."""
    session.execute(
        update(User)
        .where(User.id == user.id)
        .values(
            email=tombstone,
            # Not a bcrypt hash: no password can ever match it.
            password_hash="!deleted:" + secrets.token_hex(32),
            deleted_at=now,
            session_version=User.session_version + 1,
            last_login_at=None,
            failed_logins=0,
            locked_until=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    session.expire(user)  # the bulk UPDATE does not refresh the loaded object


def _remove_profile(session: Session, user_id: uuid.UUID, *, now: datetime) -> None:
    session.execute(delete(SellerAvailability).where(SellerAvailability.seller_id == user_id))
    profile_id = session.scalar(delete(Profile).where(Profile.user_id == user_id).returning(Profile.id))
    if profile_id is not None:
        # Every photo the profile ever had: a durable to-do and a task (photos.queue_photo_deletion).
        queue_photo_deletion(session, profile_id, now=now)


def _silence_mail_to(session: Session, email: str, *, reason: str) -> None:
    """Mail to an erased address: unsent rows are never sent, sent rows lose their contents."""
    to_them = func.lower(OutboxEmail.recipient) == email
    session.execute(
        update(OutboxEmail)
        .where(to_them, OutboxEmail.status == EmailStatus.PENDING)
        .values(status=EmailStatus.FAILED, last_error=reason)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(OutboxEmail)
        .where(to_them)
        .values(context={}, text_body=None, html_body=None)
        .execution_options(synchronize_session=False)
    )


def _unscrubbed() -> tuple[ColumnElement[bool] | TextClause, ...]:
    """Farewell emails done with (delivered, or failed for good) that still hold the address."""
    return (
        # The partial index ix_email_outbox_farewell_unscrubbed's own predicate, as literal SQL:
        # with bound parameters a cached generic plan could not use the index.
        text(f"template = '{FAREWELL_TEMPLATE}' AND right(recipient, 8) <> '@invalid'"),
        OutboxEmail.status.in_((EmailStatus.SENT, EmailStatus.FAILED)),
    )


@looks_for(lambda now: select(OutboxEmail.id).where(*_unscrubbed()).exists())
def scrub_farewell_emails(session: Session, now: datetime, settings: Settings) -> dict[str, int]:
    """Sweep step: once the "account deleted" email is delivered (or has failed for good), its
    row forgets the address and the bodies, so no trace of the old email is left."""
    result = session.execute(
        update(OutboxEmail)
        .where(*_unscrubbed())
        .values(
            recipient=func.concat("deleted-", OutboxEmail.context["user_id"].astext, "@invalid"),
            text_body=None,
            html_body=None,
        )
        .execution_options(synchronize_session=False)
    )
    return {"farewells_scrubbed": affected_rows(result)}


# --- Buyer erasure ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Erasure:
    tombstone: str
    rows: int  # rows changed, across every table


def erase_buyer_email(session: Session, email: str, *, admin_id: uuid.UUID, now: datetime) -> Erasure:
    """Replace a buyer's address everywhere it appears with its tombstone (repeat-safe: a second
    run finds nothing). The audit row names the tombstone, never the address."""
    address = normalise_email(email or "")
    if "@" not in address or len(address) > 254 or any(ch.isspace() for ch in address):
        raise Invalid("invalid", "Enter the buyer's email address.", field="email")
    if session.scalar(select(User.id).where(User.email == address)):
        raise Conflict(
            "is_account",
            "This address belongs to a ChatLink account; that account can be deleted instead.",
            field="email",
        )
    tombstone = erased_email(address)
    _silence_mail_to(session, address, reason="recipient erased")
    # A block already held under the tombstone makes the seller's copy under the address redundant.
    session.execute(
        delete(Block).where(
            Block.buyer_email == address,
            Block.seller_id.in_(select(Block.seller_id).where(Block.buyer_email == tombstone)),
        )
    )
    rows = replace_email_everywhere(session, address, tombstone)
    record_event(
        session,
        "admin.buyer_erased",
        ref_id=tombstone,
        actor=user_actor(admin_id),
        payload={"rows": sum(rows.values())},
    )
    return Erasure(tombstone=tombstone, rows=sum(rows.values()))


def replace_email_everywhere(session: Session, email: str, replacement: str) -> dict[str, int]:
    """In every text and JSON column of every table, replace ``email`` (any case, also
    URL-encoded) with ``replacement``. Returns the number of rows changed per table."""
    patterns = {_pattern(email), _pattern(quote(email, safe=""))}
    changed: dict[str, int] = {}
    for table in Base.metadata.sorted_tables:
        columns = [column for column in table.columns if _holds_text(column)]
        if not columns:
            continue
        matches = [_matches(column, pattern) for column in columns for pattern in patterns]
        values = {column.name: _replaced(column, patterns, replacement) for column in columns}
        result = session.execute(table.update().where(or_(*matches)).values(values))
        if count := affected_rows(result):
            changed[table.name] = count
    return changed


def _pattern(email: str) -> str:
    # Python's re.escape backslash-escapes only punctuation, which PostgreSQL's regex also reads
    # as the literal character.
    return _BEFORE + re.escape(email.lower()) + _AFTER


def _holds_text(column: Column[Any]) -> bool:
    if isinstance(column.type, Enum):
        return False  # a fixed vocabulary never holds an address
    return isinstance(column.type, String | Text | JSONB)


def _as_text(column: Column[Any]) -> Any:
    return column.cast(Text) if isinstance(column.type, JSONB) else column


def _matches(column: Column[Any], pattern: str) -> Any:
    return and_(column.isnot(None), _as_text(column).op("~*")(pattern))


def _replaced(column: Column[Any], patterns: set[str], replacement: str) -> Any:
    value = _as_text(column)
    for pattern in patterns:
        value = func.regexp_replace(value, pattern, replacement, "gi")
    if isinstance(column.type, JSONB):
        return value.cast(JSONB)
    length = getattr(column.type, "length", None)
    # The tombstone can be longer than the address; never overflow the column.
    return func.left(value, length) if length else value
