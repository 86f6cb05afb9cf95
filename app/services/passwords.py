"""Password rules: what a new password must satisfy, with a message naming the rule that failed.

The rules follow NIST SP 800-63B: a minimum length and a check against passwords known to be
common, rather than composition rules ("one digit, one symbol") that make passwords harder to
remember without making them much harder to guess.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

MIN_LENGTH = 10
# bcrypt only looks at the first 72 bytes: a longer password would silently lose its tail.
MAX_BYTES = 72

COMMON_PASSWORDS_FILE = Path(__file__).resolve().parent.parent / "data" / "common_passwords.txt"

TOO_SHORT = f"Use at least {MIN_LENGTH} characters."
TOO_LONG = f"Use at most {MAX_BYTES} characters (fewer if you use accented letters or emoji)."
TOO_COMMON = "This password is one of the most commonly used ones. Choose something less predictable."
IS_EMAIL = "Do not use your email address as your password."


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list, lower-cased; read once per process."""
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def password_problem(password: str, *, email: str | None = None) -> str | None:
    """The first rule ``password`` breaks, as a message for the person choosing it; None if fine."""
    if len(password) < MIN_LENGTH:
        return TOO_SHORT
    if len(password.encode("utf-8")) > MAX_BYTES:
        return TOO_LONG
    lowered = password.strip().lower()
    if lowered in common_passwords():
        return TOO_COMMON
    if email and lowered in {email.strip().lower(), email.strip().lower().partition("@")[0]}:
        return IS_EMAIL
    return None
