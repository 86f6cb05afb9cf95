"""Lockout with backoff after failed log-ins.

Five failures in a row lock the account for 15 minutes; each further lock doubles (30, 60, ...
minutes, capped at a day). A successful log-in or a password reset starts the count afresh.

An email that has no account locks in exactly the same way, counted in Redis instead of the
``users`` row. Otherwise five wrong guesses would tell anyone whether an address is registered:
"locked" would only ever appear for real accounts.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import redis
from sqlalchemy import ColumnElement, CursorResult, DateTime, Interval, case, func, literal, or_, update
from sqlalchemy.orm import Session

from app.models import User

MAX_FAILED_LOGINS = 5
LOCK_BASE_SECONDS = 15 * 60
LOCK_MAX_SECONDS = 24 * 3600
# How long Redis remembers failures and locks of unknown emails. A real account remembers them
# until the next successful log-in; a month is long enough to behave the same in practice.
UNKNOWN_EMAIL_MEMORY_SECONDS = 30 * 24 * 3600


def lock_seconds(previous_lockouts: int) -> int:
    """Length of the next lock, given how many locks came before it."""
    return int(min(LOCK_BASE_SECONDS * 2 ** min(previous_lockouts, 16), LOCK_MAX_SECONDS))


def describe_wait(seconds: float) -> str:
    """``900`` → ``"15 minutes"``; long waits in hours."""
    minutes = max(1, math.ceil(seconds / 60))
    if minutes < 120:
        return "1 minute" if minutes == 1 else f"{minutes} minutes"
    return f"{math.ceil(minutes / 60)} hours"


def is_locked(locked_until: datetime | None, now: datetime) -> bool:
    return locked_until is not None and locked_until > now


def _not_locked(now: datetime) -> ColumnElement[bool]:
    return or_(User.locked_until.is_(None), User.locked_until <= now)


def record_failed_login(session: Session, user_id: uuid.UUID, *, now: datetime) -> datetime | None:
    """Count one failure in a single UPDATE; the fifth locks the account.

    Returns the new ``locked_until`` when this failure locked the account, else None. Raises
    ``LookupError`` when the account was already locked (a concurrent request locked it first):
    a locked account does not count failures.
    """
    reached = User.failed_logins + 1 >= MAX_FAILED_LOGINS
    length = func.least(LOCK_BASE_SECONDS * func.power(2, func.least(User.lockouts, 16)), LOCK_MAX_SECONDS)
    until = literal(now, DateTime(timezone=True)) + literal(timedelta(seconds=1), Interval()) * length
    statement = (
        update(User)
        .where(User.id == user_id, _not_locked(now))
        .values(
            failed_logins=case((reached, 0), else_=User.failed_logins + 1),
            lockouts=case((reached, User.lockouts + 1), else_=User.lockouts),
            locked_until=case((reached, until), else_=User.locked_until),
        )
        .returning(User.locked_until)
        .execution_options(synchronize_session="fetch")
    )
    row = session.execute(statement).first()
    if row is None:
        raise LookupError("account already locked")
    return row.locked_until if is_locked(row.locked_until, now) else None


def clear_failed_logins(session: Session, user_id: uuid.UUID, *, now: datetime) -> bool:
    """Record a successful log-in. False if the account got locked meanwhile (then it stays so)."""
    statement = (
        update(User)
        .where(User.id == user_id, _not_locked(now))
        .values(failed_logins=0, lockouts=0, locked_until=None, last_login_at=now)
        .execution_options(synchronize_session="fetch")
    )
    return cast(CursorResult[Any], session.execute(statement)).rowcount == 1


class UnknownEmailLockouts:
    """Failure counts and locks for emails without an account, kept in Redis under ``prefix``.

    Keys hold a SHA-256 of the address, never the address itself.
    """

    def __init__(self, client: redis.Redis, prefix: str):
        self.client = client
        self.prefix = prefix

    def _key(self, part: str, address: str) -> str:
        return f"{self.prefix}:{part}:{hashlib.sha256(address.encode()).hexdigest()}"

    def locked_until(self, address: str, *, now: datetime) -> datetime | None:
        raw = cast(bytes | str | None, self.client.get(self._key("until", address)))
        if raw is None:
            return None
        until = datetime.fromtimestamp(float(raw), UTC)
        return until if until > now else None

    def record_failure(self, address: str, *, now: datetime) -> datetime | None:
        """Count one failure; returns the lock's end when this failure locked the address."""
        fails_key = self._key("fails", address)
        with self.client.pipeline() as pipe:
            pipe.incr(fails_key)
            pipe.expire(fails_key, UNKNOWN_EMAIL_MEMORY_SECONDS)
            failures = pipe.execute()[0]
        if failures < MAX_FAILED_LOGINS:
            return None
        # Only the request whose DELETE removes the counter locks, so two at once cannot lock twice.
        if not self.client.delete(fails_key):
            return None
        lockouts_key = self._key("lockouts", address)
        with self.client.pipeline() as pipe:
            pipe.incr(lockouts_key)
            pipe.expire(lockouts_key, UNKNOWN_EMAIL_MEMORY_SECONDS)
            lockouts = pipe.execute()[0]
        seconds = lock_seconds(lockouts - 1)
        until = now + timedelta(seconds=seconds)
        self.client.set(self._key("until", address), until.timestamp(), ex=seconds + UNKNOWN_EMAIL_MEMORY_SECONDS)
        return until
