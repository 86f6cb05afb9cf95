"""Loading the logged-in user from the session cookie."""

from __future__ import annotations

import uuid

from app.db import db
from app.extensions import login_manager
from app.models import User


@login_manager.user_loader
def load_user(session_token: str) -> User | None:
    """The cookie holds ``<user id>:<session version>``; an old version means that session was
    ended (password reset, deletion) and is refused."""
    user_id, _, version = session_token.partition(":")
    try:
        user = db.session.get(User, uuid.UUID(user_id))
    except ValueError:
        return None
    if user is None or not user.is_active or str(user.session_version) != version:
        return None
    return user
