"""The paywall's read model: a seller's public page in ONE query.

The paywall is the hottest page of the product and has a page-load budget (``bench/pageload.py``),
so everything it shows comes from one statement on the session's connection: the profile, the
seller's state, the rating summary, the count of completed calls and how fast the seller usually
answers. Proof (ratings, calls) is shown only once there is enough of it to mean something.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, Select, bindparam, cast, func, select, true
from sqlalchemy.orm import Session

from app.models import CallRequest, Profile, Rating, RequestStatus, User
from app.services.profiles import UnavailableReason, unavailable_reason

RATINGS_SHOWN_FROM = 3  # fewer ratings say more about luck than about the seller
CALLS_SHOWN_FROM = 3
ANSWERS_CONSIDERED = 20  # the seller's latest decisions: how they answer now, not a year ago
ANSWERS_NEEDED = 3
# (at most this many seconds, what the page says), fastest first; slower than a day says nothing.
ANSWER_HINTS = (
    (15 * 60, "within 15 minutes"),
    (3600, "within an hour"),
    (3 * 3600, "within a few hours"),
    (86400, "within a day"),
)


@dataclass(frozen=True)
class PaywallView:
    """Everything the paywall page shows. Plain values: the template never touches the database."""

    profile_id: uuid.UUID
    seller_id: uuid.UUID
    slug: str
    display_name: str
    bio: str
    price_cents: int
    currency: str
    photo_key: str | None
    unavailable_reason: UnavailableReason | None
    rating_count: int
    rating_average: float | None
    completed_calls: int = 0
    median_answer_seconds: float | None = None

    @property
    def is_live(self) -> bool:
        return self.unavailable_reason is None

    @property
    def shows_rating(self) -> bool:
        return self.rating_count >= RATINGS_SHOWN_FROM and self.rating_average is not None

    @property
    def shows_calls(self) -> bool:
        return self.completed_calls >= CALLS_SHOWN_FROM

    @property
    def answers_within(self) -> str | None:
        """``within an hour``: the seller's typical answer time, or None when it is not known or slow."""
        if self.median_answer_seconds is None:
            return None
        return next((words for bound, words in ANSWER_HINTS if self.median_answer_seconds <= bound), None)


_PROFILES, _USERS = Profile.__table__.c, User.__table__.c


def _rating_summary() -> Any:
    ratings = Rating.__table__.c
    return (
        select(func.count(ratings.id).label("rating_count"), func.avg(ratings.stars).label("rating_average"))
        .where(ratings.seller_id == _PROFILES.user_id)
        .lateral("rating_summary")
    )


def _completed_calls() -> Any:
    calls = CallRequest.__table__.c
    return (
        select(func.count().label("completed_calls"))
        .where(calls.seller_id == _PROFILES.user_id, calls.status == RequestStatus.COMPLETED.value)
        .lateral("completed")
    )


def _answer_times() -> Any:
    """How long the seller took to accept or decline, over their latest decisions: count and median."""
    calls = CallRequest.__table__.c
    answered_at = func.coalesce(calls.accepted_at, calls.declined_at)
    latest = (
        select(cast(func.extract("epoch", answered_at - calls.created_at), Float).label("seconds"))
        .where(calls.seller_id == _PROFILES.user_id, answered_at.is_not(None))
        .order_by(calls.created_at.desc())
        .limit(ANSWERS_CONSIDERED)
        .correlate(Profile.__table__)
        .subquery("latest")
    )
    median = func.percentile_cont(0.5).within_group(latest.c.seconds)
    return (
        select(func.count().label("answers"), median.label("median_answer_seconds"))
        .select_from(latest)
        .lateral("answers")
    )


def _paywall_query() -> Select[Any]:
    rating, completed, answers = _rating_summary(), _completed_calls(), _answer_times()
    # Table columns, not ORM entities, run on the session's connection: this is the hottest
    # read in the product, and the ORM layer would double its CPU cost for a dozen plain values.
    columns = (
        _PROFILES.id,
        _PROFILES.user_id,
        _PROFILES.slug,
        _PROFILES.display_name,
        _PROFILES.bio,
        _PROFILES.price_cents,
        _PROFILES.currency,
        _PROFILES.photo_key,
        _PROFILES.paused,
        _USERS.deleted_at,
        _USERS.suspended_at,
        _USERS.email_verified_at,
    )
    return (
        select(*columns, rating.c.rating_count, rating.c.rating_average)
        .add_columns(completed.c.completed_calls, answers.c.answers, answers.c.median_answer_seconds)
        .select_from(
            Profile.__table__.join(User.__table__, _USERS.id == _PROFILES.user_id)
            .join(rating, true())
            .join(completed, true())
            .join(answers, true())
        )
        .where(_PROFILES.slug == bindparam("slug"))
    )


# Built once: SQLAlchemy then reuses its cache key and compiled form on every request.
_PAYWALL_QUERY = _paywall_query()


def load_paywall(session: Session, slug: str) -> PaywallView | None:
    """The paywall's data for ``slug`` in ONE query, or None when no profile has that slug."""
    row = session.connection().execute(_PAYWALL_QUERY, {"slug": slug}).one_or_none()
    if row is None:
        return None
    return PaywallView(
        profile_id=row.id,
        seller_id=row.user_id,
        slug=row.slug,
        display_name=row.display_name,
        bio=row.bio,
        price_cents=row.price_cents,
        currency=row.currency,
        photo_key=row.photo_key,
        unavailable_reason=unavailable_reason(row.deleted_at, row.suspended_at, row.email_verified_at, row.paused),
        rating_count=int(row.rating_count),
        rating_average=round(float(row.rating_average), 1) if row.rating_average is not None else None,
        completed_calls=int(row.completed_calls),
        median_answer_seconds=float(row.median_answer_seconds) if row.answers >= ANSWERS_NEEDED else None,
    )
