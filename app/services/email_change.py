"""Changing an account's email: verified before it takes effect, and the old address told.

1. ``request_email_change``: the signed-in seller gives the new address and their current
   password. A link goes to the NEW address; nothing changes yet. If the new address already has
   an account, its owner gets a note instead, and the answer is the same (no account is revealed).
2. ``confirm_email_change``: opening the link moves the account to the new address (verified, as
   the link proved it), ends every session (the caller logs its own one back in) and tells the OLD
   address, with the way back if it was not them.

The link is a signed token naming the account, the old and the new address: it stops working once
the account's email is no longer the old one (so it works once, and a second pending link dies
when the first is used), and after ``MAX_AGE_SECONDS``. Nothing is stored until it is used.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import affected_rows
from app.models import User
from app.observability import mask_email
from app.refusals import Conflict, Forbidden, Invalid
from app.services.accounts import InvalidToken, WrongAccount, find_user_by_email, password_matches, validated_email
from app.services.audit import record_event, user_actor
from app.services.outbox import queue_email
from app.services.sessions import end_sessions

SALT = "change-email"
MAX_AGE_SECONDS = 24 * 3600
REFUSED_CREDENTIAL = "That password is not right."


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=SALT)


def request_email_change(
    session: Session, user_id: uuid.UUID, new_email: str, password: str, *, now: datetime, app_url: str, secret_key: str
) -> str:
    """Send the confirmation link to ``new_email``; returns the normalised address. Refuses a
    wrong password (403, ``currentPassword``), a malformed or unchanged address (422, ``email``)."""
    user = session.scalar(select(User).where(User.id == user_id).execution_options(populate_existing=True))
    if user is None or not user.is_active or not password_matches(password, user.password_hash):
        raise Forbidden("wrong_password", REFUSED_CREDENTIAL, fields={"currentPassword": REFUSED_CREDENTIAL})
    address = validated_email(new_email)
    if address == user.email:
        raise Invalid("same_email", "That is already your email address.", field="email")
    if find_user_by_email(session, address) is not None:
        # Its owner hears of it; the requester gets the same answer as for a free address.
        queue_email(
            session,
            recipient=address,
            template="email_change_taken",
            context={},
            dedupe_key=f"email_change_taken:{address}:{now:%Y%m%d%H}",
        )
    else:
        token = _serializer(secret_key).dumps({"user": str(user.id), "from": user.email, "to": address})
        queue_email(
            session,
            recipient=address,
            template="email_change_verify",
            context={"confirm_url": f"{app_url}/account/email/{token}", "hours": MAX_AGE_SECONDS // 3600},
        )
    record_event(session, "auth.email_change_requested", ref_id=user.id, actor=user_actor(user.id))
    return address


def confirm_email_change(
    session: Session, token: str, *, secret_key: str, now: datetime, current_user_id: uuid.UUID | None = None
) -> User:
    """Move the account to the token's new address; tell the old one. Refuses an expired, used or
    tampered link (400), a link for another account than the signed-in one (403), and a new
    address someone took meanwhile (409)."""
    payload = _load(token, secret_key)
    user_id, old, new = payload
    if current_user_id is not None and current_user_id != user_id:
        raise WrongAccount("This link changes the email of a different account. Log out, then open it again.")
    try:
        with session.begin_nested():
            moved = session.execute(
                update(User)
                .where(User.id == user_id, User.email == old, User.deleted_at.is_(None))
                .values(email=new, email_verified_at=now, updated_at=now)
                .execution_options(synchronize_session=False)
            )
    except IntegrityError:
        raise Conflict("email_taken", "Another account uses that address now. Choose another one.") from None
    if not affected_rows(moved):
        raise InvalidToken("This link was already used, or your email changed since. Ask for a new one.")
    end_sessions(session, user_id)
    queue_email(
        session,
        recipient=old,
        template="email_changed",
        context={"new_email": mask_email(new)},
        dedupe_key=f"email_changed:{user_id}:{new}",
    )
    record_event(session, "auth.email_changed", ref_id=user_id, actor=user_actor(user_id))
    return session.get_one(User, user_id, populate_existing=True)


def _load(token: str, secret_key: str) -> tuple[uuid.UUID, str, str]:
    invalid = InvalidToken("This link is not valid. Ask for a new one on your account page.")
    try:
        payload = _serializer(secret_key).loads(token, max_age=MAX_AGE_SECONDS)
    except SignatureExpired:
        raise InvalidToken("This link has expired. Ask for a new one on your account page.") from None
    except BadSignature:
        raise invalid from None
    try:
        return uuid.UUID(payload["user"]), str(payload["from"]), str(payload["to"])
    except (TypeError, KeyError, ValueError):
        raise invalid from None
