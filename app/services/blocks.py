"""A seller's block list, as the money path sees it: may this buyer email pay this seller?"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, exists, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.models import Block, CallRequest
from app.refusals import Invalid
from app.services.audit import record_event, user_actor
from app.services.lifecycle import decisions


def normalise_email(email: str) -> str:
    """Emails are compared trimmed and lower-case, the way accounts store them."""
    return email.strip().lower()


def is_blocked(session: Session, seller_id: uuid.UUID, email: str | None) -> bool:
    """True when ``seller_id`` blocked ``email``. Checked at the paywall, when a checkout is
    created and again when the payment arrives (a block may land in between)."""
    if not email:
        return False
    address = normalise_email(email)
    # An admin's erasure of the address (app.services.privacy) leaves its tombstone in the block
    # list, so the block still holds afterwards.
    blocked = Block.buyer_email.in_((address, erased_email(address)))
    return bool(session.scalar(select(exists().where(Block.seller_id == seller_id, blocked))))


def erased_email(email: str) -> str:
    """The tombstone that replaces an erased buyer address: the same for the same address
    (so erasing twice changes nothing), and no way back to it without guessing the address."""
    digest = hashlib.sha256(normalise_email(email).encode()).hexdigest()
    return f"erased-{digest[:16]}@invalid"


# --- The seller's block list (helper "trust") ---------------------------------------------------
# Blocking refuses the buyer's future payments (the checks above) and cancels the seller's PENDING
# requests from that email, releasing their holds: a seller who blocks someone from a waiting
# request does not want the call. Those buyers get the ordinary "declined" email, which does not
# say they were blocked.

MAX_BLOCKS_LISTED = 500


@dataclass(frozen=True)
class BlockOutcome:
    block: Block
    created: bool  # False when the email was already blocked (a repeat is a no-op)
    cancelled_request_ids: list[uuid.UUID]


def list_blocks(session: Session, seller_id: uuid.UUID) -> list[Block]:
    """The seller's blocked emails, newest first."""
    query = (
        select(Block)
        .where(Block.seller_id == seller_id)
        .order_by(Block.created_at.desc(), Block.id)
        .limit(MAX_BLOCKS_LISTED)
    )
    return list(session.scalars(query))


def block_email(session: Session, seller_id: uuid.UUID, email: str, *, now: datetime) -> BlockOutcome:
    """Block ``email`` for ``seller_id``: repeat-safe (ON CONFLICT DO NOTHING on the unique pair)."""
    address = _valid_email(email)
    inserted = session.execute(
        insert(Block)
        .values(id=uuid.uuid4(), seller_id=seller_id, buyer_email=address, created_at=now)
        .on_conflict_do_nothing(index_elements=["seller_id", "buyer_email"])
        .returning(Block.id)
    ).scalar_one_or_none()
    block = session.execute(
        select(Block)
        .where(Block.seller_id == seller_id, Block.buyer_email == address)
        .execution_options(populate_existing=True)
    ).scalar_one()
    if inserted is not None:
        # The block id is the reference: the audit trail never needs the buyer's address.
        record_event(session, "block.created", ref_id=block.id, actor=user_actor(seller_id))
    cancelled = decisions.cancel_pending_from(session, seller_id, address, now=now, actor=user_actor(seller_id))
    return BlockOutcome(block=block, created=inserted is not None, cancelled_request_ids=cancelled)


def block_buyer_of_request(
    session: Session, seller_id: uuid.UUID, request_id: uuid.UUID, *, now: datetime
) -> BlockOutcome | None:
    """Block the buyer of one of the seller's requests; None when the request is not theirs."""
    email = session.scalar(
        select(CallRequest.buyer_email).where(CallRequest.id == request_id, CallRequest.seller_id == seller_id)
    )
    if email is None:
        return None
    return block_email(session, seller_id, email, now=now)


def unblock(session: Session, seller_id: uuid.UUID, block_id: uuid.UUID) -> bool:
    """Remove one block of the seller's; False when there is none (already removed, or not theirs)."""
    removed = session.execute(
        delete(Block).where(Block.id == block_id, Block.seller_id == seller_id).returning(Block.id)
    ).scalar_one_or_none()
    if removed is None:
        return False
    record_event(session, "block.removed", ref_id=block_id, actor=user_actor(seller_id))
    return True


def _valid_email(email: str) -> str:
    address = normalise_email(email or "")
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        raise Invalid("invalid", "Enter an email address like name@example.com.", field="email") from None
    return address
