"""Accounts: creating users, hashing and checking passwords."""

from __future__ import annotations

import secrets
from datetime import datetime

import bcrypt
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Role, User

BCRYPT_ROUNDS = 12


def normalise_email(email: str) -> str:
    return email.strip().lower()


def hash_password(password: str, *, rounds: int = BCRYPT_ROUNDS) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


def password_matches(password: str, password_hash: str) -> bool:
    return bcrypt.checkpw(password.encode(), password_hash.encode())


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
