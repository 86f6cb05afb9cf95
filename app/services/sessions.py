"""Sessions of an account: log-out, "sign out everywhere" and a password change end them.

A session remembers the account's session generation (``users.session_version``) it was made
in (``User.get_id``), and the user loader refuses a session whose generation is not the
account's current one. Bumping the generation therefore ends every session of the account on
the server, including copies of the cookie: signed cookies alone cannot be revoked. Password
reset and account deletion bump it too (``accounts.reset_password``, ``privacy``).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.models import User
from app.refusals import Forbidden, Invalid
from app.services.accounts import hash_password, password_matches
from app.services.audit import record_event, user_actor
from app.services.passwords import password_problem


def log_out(session: Session, user_id: uuid.UUID) -> None:
    """Log-out ends every session of the account: a copy of the session cookie (another device,
    or one stolen before log-out) is refused from now on, because it names the old generation."""
    end_sessions(session, user_id)
    record_event(session, "auth.logout", ref_id=user_id, actor=user_actor(user_id))


def end_sessions(session: Session, user_id: uuid.UUID) -> int:
    """Bump the account's session generation and return the new one: every session made before
    (each remembers the generation it was made in) is refused by the user loader from now on."""
    return session.execute(
        update(User)
        .where(User.id == user_id)
        .values(session_version=User.session_version + 1)
        .returning(User.session_version)
        .execution_options(synchronize_session="fetch")
    ).scalar_one()


def sign_out_everywhere(session: Session, user_id: uuid.UUID) -> User:
    """End every session of the account; the caller logs its own one back in with the user returned."""
    end_sessions(session, user_id)
    record_event(session, "auth.sessions_ended", ref_id=user_id, actor=user_actor(user_id))
    return session.get_one(User, user_id, populate_existing=True)


def change_password(session: Session, user_id: uuid.UUID, current: str, new: str, *, now: datetime) -> User:
    """Set a new password after checking the current one; every session ends (the caller logs its
    own one back in). Refuses ``wrong_password`` (403) and a new password the policy rejects (422)."""
    user = session.scalar(
        select(User).where(User.id == user_id).with_for_update().execution_options(populate_existing=True)
    )
    if user is None or not user.is_active or not password_matches(current, user.password_hash):
        message = "That password is not right."
        raise Forbidden("wrong_password", message, fields={"currentPassword": message})
    problem = password_problem(new, email=user.email)
    if problem:
        raise Invalid("weak_password", problem, field="newPassword")
    session.execute(
        update(User)
        .where(User.id == user_id)
        .values(password_hash=hash_password(new), updated_at=now)
        .execution_options(synchronize_session="fetch")
    )
    end_sessions(session, user_id)
    record_event(session, "auth.password_changed", ref_id=user_id, actor=user_actor(user_id))
    return session.get_one(User, user_id, populate_existing=True)
