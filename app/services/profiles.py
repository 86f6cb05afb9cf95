"""Sellers' public profiles: the rules for names, slugs, bios and prices, saving a profile, and
whether a seller can be booked now. (The paywall's read model is ``app.services.paywall``; the
dashboard's is ``app.services.overview``.)

A slug is the seller's public address (``/u/<slug>``). It is generated from the display name
(transliterated to ASCII, so "José Núñez" becomes ``jose-nunez``), checked against a list of
reserved words that would impersonate the product or clash with its routes, and made unique by
a numeric suffix. The database's unique constraint has the last word when two sellers race for
the same slug.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from anyascii import anyascii
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import affected_rows
from app.models import Profile, User
from app.refusals import Conflict, Invalid

DISPLAY_NAME_MAX = 60
BIO_MAX = 500
PRICE_MIN_CENTS = 100
PRICE_MAX_CENTS = 100000
PRICE_DEFAULT_CENTS = 1000
SLUG_MIN, SLUG_MAX = 3, 40

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
# Route names, the product's own name and words that suggest authority.
_RESERVED_WORDS = """
    about account accounts admin administrator api app assets auth balance billing blog call calls cancel
    chatlink checkout contact dashboard dev docs download edit email faq forgot help home info legal login
    logout mailbox me media metrics moderator new null official owner password payment payments payout
    payouts pricing privacy profile profiles register report reports request requests reset root security
    seller sellers settings signin signup staff static status success support system team terms undefined
    user users verify verify-email webhooks www
"""
RESERVED_SLUGS = frozenset(_RESERVED_WORDS.split())
UnavailableReason = str  # "unverified" | "paused" | "suspended" | "deleted"


class ProfileError(Invalid):
    """Refused input; ``fields`` maps a field name to a message for the seller."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("invalid", "Some fields need attention.", fields=fields)


class SlugTaken(Conflict):
    """The only problem is a link someone else already has."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("slug_taken", "That link is already taken.", fields=fields)


# --- Rules ------------------------------------------------------------------------------------


def clean_display_name(value: str) -> str:
    name = " ".join(value.split())  # no leading, trailing or repeated whitespace, no newlines
    if not name:
        raise ProfileError({"display_name": "Enter the name buyers will see."})
    if len(name) > DISPLAY_NAME_MAX:
        raise ProfileError({"display_name": f"Keep the name to {DISPLAY_NAME_MAX} characters or fewer."})
    if _has_control_characters(name, allowed=""):
        raise ProfileError({"display_name": "The name contains characters that cannot be shown."})
    return name


def clean_bio(value: str) -> str:
    bio = "\n".join(line.rstrip() for line in value.replace("\r\n", "\n").replace("\r", "\n").split("\n")).strip()
    if len(bio) > BIO_MAX:
        raise ProfileError({"bio": f"Keep the bio to {BIO_MAX} characters or fewer (it has {len(bio)})."})
    if _has_control_characters(bio, allowed="\n\t"):
        raise ProfileError({"bio": "The bio contains characters that cannot be shown."})
    return bio


def check_price(cents: int) -> int:
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise ProfileError({"price_cents": "The price must be a whole number of cents."})
    if not PRICE_MIN_CENTS <= cents <= PRICE_MAX_CENTS:
        raise ProfileError({"price_cents": f"The price must be between {PRICE_MIN_CENTS} and {PRICE_MAX_CENTS} cents."})
    return cents


def slug_problem(slug: str) -> str | None:
    """Why ``slug`` cannot be used (format or reserved word), or None. Taken slugs are checked
    against the database separately."""
    if not SLUG_MIN <= len(slug) <= SLUG_MAX:
        return f"Use {SLUG_MIN} to {SLUG_MAX} characters."
    if not SLUG_PATTERN.match(slug):
        return "Use lower-case letters, digits and hyphens only, starting and ending with a letter or digit."
    if slug in RESERVED_SLUGS:
        return f"“{slug}” is reserved; choose another."
    return None


def slugify(name: str) -> str:
    """The slug stem for ``name``: ASCII, lower-case, words joined by hyphens. Emoji and other
    symbols are dropped rather than spelled out (anyascii would turn 😀 into "grinning")."""
    kept = "".join(ch for ch in name if unicodedata.category(ch)[0] not in "SC")
    ascii_text = anyascii(kept).lower()
    stem = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")
    # Leave room for a "-NN" suffix.
    return stem[: SLUG_MAX - 4].rstrip("-")


def generate_slug(session: Session, display_name: str, *, exclude_profile_id: uuid.UUID | None = None) -> str:
    """A free, valid slug for ``display_name``: the stem itself, else stem-2, stem-3, ... found
    with one query over the slugs that share the stem."""
    stem = slugify(display_name) or "seller"
    taken_query = select(Profile.slug).where((Profile.slug == stem) | Profile.slug.like(f"{stem}-%"))
    if exclude_profile_id is not None:
        taken_query = taken_query.where(Profile.id != exclude_profile_id)
    taken = set(session.scalars(taken_query))
    if slug_problem(stem) is None and stem not in taken:
        return stem
    for n in range(2, 1000):
        candidate = f"{stem}-{n}"
        if candidate not in taken and slug_problem(candidate) is None:
            return candidate
    return f"{stem}-{secrets.token_hex(3)}"


def _has_control_characters(text: str, *, allowed: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs") and ch not in allowed for ch in text)


# --- Saving -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileChanges:
    """What the seller sent; None leaves a field as it is (partial updates from the API). An
    empty slug means "generate one" for a new profile and "keep it" for an existing one."""

    display_name: str | None = None
    slug: str | None = None
    bio: str | None = None
    price_cents: int | None = None
    paused: bool | None = None


def get_profile(session: Session, user_id: uuid.UUID) -> Profile | None:
    return session.scalar(select(Profile).where(Profile.user_id == user_id))


def save_profile(session: Session, *, user_id: uuid.UUID, changes: ProfileChanges, currency: str) -> Profile:
    """Create or update the seller's profile. Raises ``ProfileError`` listing every refused field."""
    profile = session.scalar(select(Profile).where(Profile.user_id == user_id).with_for_update())
    values, errors = _validated(changes, profile)
    wanted_slug = (changes.slug or "").strip().lower()
    if profile is not None and wanted_slug == profile.slug:
        wanted_slug = ""  # unchanged
    taken = bool(wanted_slug) and "slug" not in errors and _slug_taken(session, wanted_slug)
    if taken:
        errors["slug"] = f"“{wanted_slug}” is already taken; choose another."
    if errors:
        raise SlugTaken(errors) if taken and len(errors) == 1 else ProfileError(errors)
    if profile is None:
        profile = Profile(user_id=user_id, currency=currency, price_cents=PRICE_DEFAULT_CENTS)
        slug = wanted_slug or generate_slug(session, str(values["display_name"]))
    else:
        slug = wanted_slug or profile.slug
    _store(session, profile, values, slug, generated=not wanted_slug)
    return profile


def _validated(changes: ProfileChanges, profile: Profile | None) -> tuple[dict[str, object], dict[str, str]]:
    values: dict[str, object] = {}
    errors: dict[str, str] = {}
    checks: tuple[tuple[str, Any, Callable[[Any], object]], ...] = (
        ("display_name", changes.display_name, clean_display_name),
        ("bio", changes.bio, clean_bio),
        ("price_cents", changes.price_cents, check_price),
    )
    for name, raw, check in checks:
        if raw is None:
            continue
        try:
            values[name] = check(raw)
        except ProfileError as error:
            errors.update(error.fields)
    if changes.paused is not None:
        values["paused"] = bool(changes.paused)
    wanted_slug = (changes.slug or "").strip().lower()
    if wanted_slug and (profile is None or wanted_slug != profile.slug):
        problem = slug_problem(wanted_slug)
        if problem:
            errors["slug"] = problem
    if profile is None and changes.display_name is None:
        errors.setdefault("display_name", "Enter the name buyers will see.")
    return values, errors


def _slug_taken(session: Session, slug: str) -> bool:
    return session.scalar(select(Profile.id).where(Profile.slug == slug)) is not None


def _store(session: Session, profile: Profile, values: dict[str, object], slug: str, *, generated: bool) -> None:
    """Write the profile inside a savepoint. If another seller took the same slug in the
    meantime, a generated slug gets a random suffix and a chosen one is refused."""
    for _attempt in range(3):
        try:
            # Changes are applied inside the savepoint: begin_nested() flushes what is already
            # pending first, and a failed savepoint expunges or expires what it touched.
            with session.begin_nested():
                for name, value in values.items():
                    setattr(profile, name, value)
                profile.slug = slug
                session.add(profile)
                session.flush()
            return
        except IntegrityError as error:
            if "uq_profiles_slug" not in str(error.orig):
                raise
            if not generated:
                raise SlugTaken({"slug": f"“{slug}” is already taken; choose another."}) from None
            slug = f"{slugify(str(values.get('display_name', ''))) or 'seller'}-{secrets.token_hex(3)}"
    raise SlugTaken({"slug": "Could not find a free address; choose one yourself."})


def set_paused(session: Session, *, user_id: uuid.UUID, paused: bool) -> bool:
    """Pause or resume taking calls; True when the seller has a profile to pause."""
    result = session.execute(update(Profile).where(Profile.user_id == user_id).values(paused=paused))
    return affected_rows(result) > 0


# --- Availability -----------------------------------------------------------------------------


def seller_unavailable_reason(user: User, profile: Profile | None) -> UnavailableReason | None:
    """None when the seller can be booked now; otherwise a short machine reason. The order is
    from the most to the least permanent, so the reason shown is the one that matters."""
    if profile is None:
        return "deleted"
    return unavailable_reason(user.deleted_at, user.suspended_at, user.email_verified_at, profile.paused)


def unavailable_reason(
    deleted_at: datetime | None, suspended_at: datetime | None, verified_at: datetime | None, paused: bool
) -> UnavailableReason | None:
    if deleted_at is not None:
        return "deleted"
    if suspended_at is not None:
        return "suspended"
    if verified_at is None:
        return "unverified"
    if paused:
        return "paused"
    return None
