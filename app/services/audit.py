"""The audit trail: one EventLog row per auth event, payment, request transition, video
lifecycle step and admin action. Never a password, a token or card data."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.models import EventLog


def record_event(
    session: Session,
    type: str,
    *,
    ref_id: object = None,
    actor: str | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    """Append an event. ``type`` is dotted (``auth.login_failed``, ``request.accepted``);
    ``actor`` is ``user:<id>``, ``buyer``, ``stripe`` or ``system``."""
    session.add(EventLog(type=type, ref_id=None if ref_id is None else str(ref_id), actor=actor, payload=payload or {}))


def user_actor(user_id: object) -> str:
    return f"user:{user_id}"
