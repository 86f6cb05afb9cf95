"""Accounts: sign-up, log-in with lockout, email verification and password reset.

Every function takes the session and plain values (``now``, ``app_url``, ``secret_key``) and
never commits: the view or the CLI owns the transaction. A failed log-in still writes (the
failure count, the audit event), so callers commit before answering with the error.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta
from typing import NoReturn

import bcrypt
from email_validator import EmailNotValidError, validate_email
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.db import affected_rows
from app.formats import iso
from app.models import PasswordResetToken, Role, User
from app.refusals import BadRequest, Forbidden, Invalid, TooMany, Unauthenticated
from app.services import lockouts
from app.services.audit import record_event, user_actor
from app.services.outbox import queue_email
from app.services.passwords import password_problem

BCRYPT_ROUNDS = 12
# A bcrypt hash at the production cost, checked against when the email is unknown so that an
# unknown email takes as long to refuse as a wrong password.
_DUMMY_HASH = "$2b$12$bH0IVTGRZYZtWzwSyHRkx.AGWP9krxNiJ0JwBO.m56SNcSYqDhLJe"

VERIFY_SALT = "verify-email"
VERIFY_MAX_AGE_SECONDS = 48 * 3600
RESET_TOKEN_BYTES = 32
RESET_TOKEN_TTL = timedelta(hours=1)
# At most this many reset emails per account per hour, whoever asks: the per-IP rate limit
# alone would let someone flood a victim's inbox from many addresses.
RESET_EMAILS_PER_HOUR = 3

WRONG_CREDENTIALS = "Wrong email or password."
BAD_EMAIL = "Enter an email address like name@example.com."


# The account's refusals: each a domain refusal kind (app/refusals.py) with its own code.


class InvalidInput(Invalid):
    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__("invalid", message, field=field)


class LoginFailed(Unauthenticated):
    def __init__(self, message: str) -> None:
        super().__init__("invalid_credentials", message)


class AccountLocked(TooMany):
    def __init__(self, locked_until: datetime, *, now: datetime) -> None:
        retry_after = max(1, int((locked_until - now).total_seconds() + 0.999))
        wait = lockouts.describe_wait(retry_after)
        message = f"Too many failed log-ins: this account is locked. Try again in {wait}."
        super().__init__("account_locked", message, retry_after=retry_after)
        self.locked_until = locked_until


class InvalidToken(BadRequest):
    def __init__(self, message: str) -> None:
        super().__init__("invalid_token", message)


class WrongAccount(Forbidden):
    def __init__(self, message: str) -> None:
        super().__init__("wrong_account", message)


# --- Passwords and users -------------------------------------------------------------------


def normalise_email(email: str) -> str:
    return email.strip().lower()


def hash_password(password: str, *, rounds: int = BCRYPT_ROUNDS) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


def password_matches(password: str, password_hash: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), password_hash.encode())
    except ValueError:  # not a bcrypt hash (a disabled account)
        return False


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def find_user_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == normalise_email(email)))


def create_user(
    session: Session,
    email: str,
    password: str,
    *,
    role: Role = Role.SELLER,
    verified_at: datetime | None = None,
) -> User:
    user = User(
        email=normalise_email(email),
        password_hash=hash_password(password),
        role=role,
        email_verified_at=verified_at,
    )
    session.add(user)
    session.flush()
    return user


def validated_email(email: str) -> str:
    """The normalised address, or ``InvalidInput`` on the ``email`` field."""
    address = normalise_email(email)
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        raise InvalidInput(BAD_EMAIL, field="email") from None
    return address


# --- Sign-up and log-in ---------------------------------------------------------------------


def sign_up(session: Session, email: str, password: str, *, now: datetime, app_url: str, secret_key: str) -> None:
    """Start a seller's account: the confirmation link goes to the address, and opening it
    confirms the address and logs the seller in. Refusals (a malformed address, a weak password)
    name the field at fault.

    A registered address gets the same answer (the caller cannot tell the difference, so sign-up
    reveals no account) and, instead of a link, a note that someone tried to sign up with it.
    Both paths hash the password once, so they also take about as long."""
    address = validated_email(email)
    problem = password_problem(password, email=address)
    if problem:
        raise InvalidInput(problem, field="password")
    password_hash = hash_password(password)
    existing = find_user_by_email(session, address)
    if existing is not None:
        _tell_owner_of_sign_up_attempt(session, existing, now=now)
        return
    # ON CONFLICT: of two sign-ups racing for one address, one makes the account, the other nothing.
    statement = (
        insert(User)
        .values(
            id=uuid.uuid4(),
            email=address,
            password_hash=password_hash,
            role=Role.SELLER,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["email"])
        .returning(User.id)
    )
    user_id = session.execute(statement).scalar_one_or_none()
    if user_id is None:
        return
    user = session.get_one(User, user_id)
    record_event(session, "auth.signup", ref_id=user.id, actor=user_actor(user.id))
    send_verification_email(
        session, user, app_url=app_url, secret_key=secret_key, dedupe_key=f"verify_email:signup:{user.id}"
    )


def _tell_owner_of_sign_up_attempt(session: Session, user: User, *, now: datetime) -> None:
    """At most one note an hour, so sign-ups cannot be used to flood someone's inbox."""
    queue_email(
        session,
        recipient=user.email,
        template="signup_attempt",
        context={},
        dedupe_key=f"signup_attempt:{user.id}:{now:%Y%m%d%H}",
    )
    record_event(session, "auth.signup_attempt", ref_id=user.id, actor="anonymous")


def log_in(
    session: Session, email: str, password: str, *, now: datetime, unknown: lockouts.UnknownEmailLockouts
) -> User:
    """The user whose password this is. Raises ``LoginFailed`` or ``AccountLocked``; both
    after writing the failure, which the caller must commit."""
    address = normalise_email(email)
    user = find_user_by_email(session, address)
    if user is None or not user.is_active:
        _refuse_unknown_email(session, address, password, now=now, unknown=unknown)
    if lockouts.is_locked(user.locked_until, now):
        raise AccountLocked(user.locked_until or now, now=now)
    if not password_matches(password, user.password_hash):
        _refuse_wrong_password(session, user, now=now)
    if not lockouts.clear_failed_logins(session, user.id, now=now):
        session.refresh(user)
        raise AccountLocked(user.locked_until or now, now=now)
    record_event(session, "auth.login", ref_id=user.id, actor=user_actor(user.id))
    return user


def _refuse_unknown_email(
    session: Session, address: str, password: str, *, now: datetime, unknown: lockouts.UnknownEmailLockouts
) -> NoReturn:
    locked_until = unknown.locked_until(address, now=now)
    if locked_until is not None:
        raise AccountLocked(locked_until, now=now)
    password_matches(password, _DUMMY_HASH)
    record_event(session, "auth.login_failed", actor="anonymous", payload={"reason": "unknown_email"})
    locked_until = unknown.record_failure(address, now=now)
    if locked_until is not None:
        raise AccountLocked(locked_until, now=now)
    raise LoginFailed(WRONG_CREDENTIALS)


def _refuse_wrong_password(session: Session, user: User, *, now: datetime) -> NoReturn:
    try:
        locked_until = lockouts.record_failed_login(session, user.id, now=now)
    except LookupError:
        session.refresh(user)
        raise AccountLocked(user.locked_until or now, now=now) from None
    if locked_until is None:
        record_event(session, "auth.login_failed", ref_id=user.id, actor="anonymous")
        raise LoginFailed(WRONG_CREDENTIALS)
    record_event(session, "auth.lockout", ref_id=user.id, actor="system", payload={"lockedUntil": iso(locked_until)})
    raise AccountLocked(locked_until, now=now)


# --- Email verification ---------------------------------------------------------------------


def _verify_serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=VERIFY_SALT)


def make_verification_token(user: User, *, secret_key: str) -> str:
    """A signed token naming the user AND the address: it stops working if the email changes."""
    return _verify_serializer(secret_key).dumps({"user": str(user.id), "email": user.email})


def send_verification_email(
    session: Session, user: User, *, app_url: str, secret_key: str, dedupe_key: str | None = None
) -> None:
    token = make_verification_token(user, secret_key=secret_key)
    queue_email(
        session,
        recipient=user.email,
        template="verify_email",
        context={"verify_url": f"{app_url}/verify-email/{token}"},
        dedupe_key=dedupe_key,
    )


def resend_verification(session: Session, user: User, *, app_url: str, secret_key: str) -> bool:
    """Queue a fresh verification email; False (nothing sent) when the email is already verified."""
    if user.email_verified_at is not None:
        return False
    send_verification_email(session, user, app_url=app_url, secret_key=secret_key)
    record_event(session, "auth.verification_resent", ref_id=user.id, actor=user_actor(user.id))
    return True


def verify_email(
    session: Session, token: str, *, secret_key: str, now: datetime, current_user_id: uuid.UUID | None = None
) -> User:
    """Mark the token's user verified (repeat-safe). ``current_user_id`` is whoever is logged in:
    a link for another account is refused rather than silently verifying someone else."""
    return confirm_email(session, token, secret_key=secret_key, now=now, current_user_id=current_user_id)[0]


def confirm_email(
    session: Session, token: str, *, secret_key: str, now: datetime, current_user_id: uuid.UUID | None = None
) -> tuple[User, bool]:
    """``verify_email``, also saying whether this very call confirmed the address (True once per
    account): the link from sign-up logs the new seller in that one time only, so a link that
    leaks later opens nothing."""
    try:
        payload = _verify_serializer(secret_key).loads(token, max_age=VERIFY_MAX_AGE_SECONDS)
    except SignatureExpired:
        raise InvalidToken("This verification link has expired. Log in and ask for a new one.") from None
    except BadSignature:
        raise InvalidToken("This verification link is not valid.") from None
    invalid = InvalidToken("This verification link is not valid.")
    try:
        user = session.get(User, uuid.UUID(payload["user"]))
    except (TypeError, KeyError, ValueError):
        raise invalid from None
    if user is None or not user.is_active or user.email != payload.get("email"):
        raise invalid
    if current_user_id is not None and current_user_id != user.id:
        raise WrongAccount("This link verifies a different account. Log out, then open the link again.")
    statement = (
        update(User)
        .where(User.id == user.id, User.email_verified_at.is_(None))
        .values(email_verified_at=now)
        .execution_options(synchronize_session="fetch")
    )
    first_time = bool(affected_rows(session.execute(statement)))
    if first_time:
        record_event(session, "auth.email_verified", ref_id=user.id, actor=user_actor(user.id))
    return user, first_time


# --- Password reset -------------------------------------------------------------------------


def hash_reset_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def request_password_reset(session: Session, email: str, *, now: datetime, app_url: str) -> None:
    """Email a reset link if the account exists. Says nothing either way: the caller answers the
    same whether or not anything was sent."""
    user = find_user_by_email(session, email)
    if user is None or not user.is_active:
        return
    recent = session.scalar(
        select(func.count())
        .select_from(PasswordResetToken)
        .where(PasswordResetToken.user_id == user.id, PasswordResetToken.created_at > now - timedelta(hours=1))
    )
    if (recent or 0) >= RESET_EMAILS_PER_HOUR:
        return
    token = secrets.token_urlsafe(RESET_TOKEN_BYTES)
    digest = hash_reset_token(token)
    session.add(
        PasswordResetToken(user_id=user.id, token_hash=digest, expires_at=now + RESET_TOKEN_TTL, created_at=now)
    )
    queue_email(
        session,
        recipient=user.email,
        template="password_reset",
        context={
            "reset_url": f"{app_url}/reset/{token}",
            "expires_minutes": int(RESET_TOKEN_TTL.total_seconds() // 60),
        },
        dedupe_key=f"password_reset:{digest}",
    )
    record_event(session, "auth.reset_requested", ref_id=user.id, actor="anonymous")


def check_reset_token(session: Session, token: str, *, now: datetime) -> PasswordResetToken:
    """The stored token, if it can still be used; otherwise ``InvalidToken`` saying why."""
    row = session.scalar(select(PasswordResetToken).where(PasswordResetToken.token_hash == hash_reset_token(token)))
    if row is None:
        raise InvalidToken("This reset link is not valid. Request a new one.")
    if row.used_at is not None:
        raise InvalidToken("This reset link was already used. Request a new one if you need to.")
    if row.expires_at <= now:
        raise InvalidToken("This reset link has expired (links last one hour). Request a new one.")
    return row


def reset_password(session: Session, token: str, new_password: str, *, now: datetime) -> User:
    """Set a new password through a reset token, once. Ends every session of the user (the
    caller may log the current one back in) and lifts any lockout."""
    row = check_reset_token(session, token, now=now)
    user = session.get_one(User, row.user_id)
    problem = password_problem(new_password, email=user.email)
    if problem:
        raise InvalidInput(problem, field="password")
    # Consuming the token is the conditional UPDATE: of two concurrent resets only one wins.
    consumed = affected_rows(
        session.execute(
            update(PasswordResetToken)
            .where(PasswordResetToken.id == row.id, PasswordResetToken.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session="fetch")
        )
    )
    if not consumed:
        raise InvalidToken("This reset link was already used. Request a new one if you need to.")
    session.execute(
        update(User)
        .where(User.id == user.id)
        .values(
            password_hash=hash_password(new_password),
            session_version=User.session_version + 1,
            failed_logins=0,
            lockouts=0,
            locked_until=None,
            # The link arrived in the mailbox, which proves the address as well as a verify link.
            email_verified_at=func.coalesce(User.email_verified_at, now),
        )
        .execution_options(synchronize_session="fetch")
    )
    # Any other link still in the mailbox dies with this reset.
    session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.user_id == user.id, PasswordResetToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session="fetch")
    )
    record_event(session, "auth.reset_done", ref_id=user.id, actor=user_actor(user.id))
    session.refresh(user)
    return user
